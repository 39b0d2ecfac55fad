#!/usr/bin/env bash
# The main job on the bundled sample photos: enroll five people from their aligned crops, then identify the people
# in four full-size photos and in a group photo. Uses ./demo-home (delete it to start again).
set -u
cd "$(dirname "$0")/../.."
export IDSVC_HOME="${IDSVC_HOME:-$PWD/demo-home}"
for person in angelina_jolie bradley_cooper kate_siegel paul_rudd shea_whigham; do
  idsvc enroll "$person" "data/samples/aligned/$person/1.png" || exit $?
done
for person in angelina_jolie kate_siegel paul_rudd shea_whigham; do
  idsvc search --top-k 3 "data/samples/people/$person/1.jpg"
  echo "search $person: exit $? (0 = identified, 1 = unknown)"
done
idsvc search --all-faces --top-k 1 data/samples/multiface.jpg
echo "group photo: exit $? (1 = nobody there is enrolled)"
idsvc status
