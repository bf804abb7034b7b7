#!/bin/sh
# One-shot job of docker-compose.yml (runs in the waittimes image): writes the workshop's stale
# wait times to waittimes_avro, once. `seed-priors` registers waittimes_avro-value before it
# produces, so a registered subject means the topic was seeded (or the service has published)
# already, and seeding again would put the stale values back on top of newer ones.
set -eu

registry=${WAITTIMES__SCHEMA_REGISTRY__URL:-http://schema-registry:8081}
if waittimes probe --url "$registry/subjects/waittimes_avro-value/versions/latest" >/dev/null 2>&1; then
    echo "waittimes_avro-value is registered already: not seeding the priors again"
    exit 0
fi
exec waittimes seed-priors
