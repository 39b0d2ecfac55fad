#!/usr/bin/env bash
# The main job on the bundled sample photos: enroll five people from their aligned crops (one identity per folder),
# then identify the people in four full-size photos (one batch, one model load) and in a group photo.
# Uses ./demo-home (delete it to start again).
set -u
cd "$(dirname "$0")/../.."
export IDSVC_HOME="${IDSVC_HOME:-$PWD/demo-home}"
idsvc enroll --each data/samples/aligned || exit $?
idsvc search --top-k 3 data/samples/people
echo "search data/samples/people: exit $? (0 = every photo identified, 1 = someone unknown)"
idsvc search --all-faces --top-k 1 data/samples/multiface.jpg
echo "group photo: exit $? (1 = nobody there is enrolled)"
idsvc status
