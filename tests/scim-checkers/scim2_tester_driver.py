"""Runs the scim2-tester conformance checks (from PyPI) against one SCIM endpoint and prints
each check's result as a JSON line: {"title", "status", "reason", "resource_type", "tags"}.

Usage: python scim2_tester_driver.py BASE_URL TOKEN

The scim2-cli front end exits non-zero as soon as any check is SKIPPED, which every server
that leaves an optional feature out has; this driver reports every status and lets the
caller judge them.
"""

import json
import sys

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import check_server


def main() -> int:
    base, token = sys.argv[1], sys.argv[2]
    http = Client(
        base_url=base,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    client = SyncSCIMClient(http)
    results = check_server(client, raise_exceptions=False)
    for result in results:
        print(
            json.dumps(
                {
                    "title": result.title,
                    "status": result.status.name,
                    "reason": result.reason,
                    "resource_type": result.resource_type,
                    "tags": sorted(result.tags or []),
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
