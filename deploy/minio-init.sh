#!/bin/sh
# The one job that holds MinIO's root credentials: it creates the bucket, an application
# user and a policy that lets that user into this bucket only. Every other service uses
# the application user. Safe to run on every `docker compose up`.
set -eu

: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}" "${REVIEWPACKS_S3_ACCESS_KEY:?}" "${REVIEWPACKS_S3_SECRET_KEY:?}"
bucket=review-packs
policy=reviewpacks-app

mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "local/$bucket"
# "create" replaces a policy of the same name, so an edited policy file takes effect on the next up.
mc admin policy create local "$policy" /etc/reviewpacks/minio-app-policy.json
# "user add" on an existing user only resets its secret to the configured one.
mc admin user add local "$REVIEWPACKS_S3_ACCESS_KEY" "$REVIEWPACKS_S3_SECRET_KEY"
if ! mc admin user info local "$REVIEWPACKS_S3_ACCESS_KEY" | grep -q "$policy"; then
    mc admin policy attach local "$policy" --user "$REVIEWPACKS_S3_ACCESS_KEY"
fi
echo "bucket $bucket and application user ready"
