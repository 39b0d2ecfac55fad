"""pip-audit over the installed environment: fail on any known vulnerability; when the vulnerability service cannot
be reached (an offline CI box: every package comes back "not found on PyPI"), say so loudly rather than report a
clean audit that never happened."""

import json
import subprocess
import sys

run = subprocess.run([sys.executable, "-m", "pip_audit", "-f", "json", "--progress-spinner", "off"],
                     capture_output=True, text=True)
try:
    deps = json.loads(run.stdout)["dependencies"]
except (ValueError, KeyError):
    print(f"pip-audit failed to run:\n{run.stderr[-2000:]}", file=sys.stderr)
    sys.exit(1)
vulnerable = [(d["name"], d["version"], v["id"]) for d in deps for v in d.get("vulns", [])]
skipped = [d for d in deps if "skip_reason" in d]
audited = len(deps) - len(skipped)
for name, version, vid in vulnerable:
    print(f"pip-audit: {name} {version}: {vid}", file=sys.stderr)
print(f"pip-audit: {audited} packages audited, {len(vulnerable)} known vulnerabilities, {len(skipped)} not audited")
if audited == 0 and skipped:
    print("pip-audit: WARNING: the vulnerability service was unreachable; nothing was audited (run it where PyPI's "
          "JSON API is reachable)", file=sys.stderr)
sys.exit(1 if vulnerable else 0)
