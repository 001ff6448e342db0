"""The person's browser in the conformance suite's `authorization-code-grant` scenario (scripts/conformance_oauth.sh):
waits for the suite to print the authorization URL in LOG, follows it to hardal-mcp's consent page, posts the
form with the sandbox's demo key as a browser would, and follows the redirect to the suite's callback.

    python scripts/conformance_consent.py LOG ISSUER
"""

from __future__ import annotations

import re
import sys
import time

import httpx2


def main() -> int:
    log, issuer = sys.argv[1], sys.argv[2].rstrip("/")
    pattern = re.compile(re.escape(issuer) + r"/authorize\?\S+")
    deadline = time.monotonic() + 120
    url = None
    while url is None:
        with open(log, encoding="utf-8", errors="replace") as out:
            found = pattern.search(out.read())
        url = found.group(0) if found else None
        if url is None:
            if time.monotonic() > deadline:
                print("conformance_consent: the suite printed no authorization URL", file=sys.stderr)
                return 1
            time.sleep(0.2)
    with httpx2.Client(base_url=issuer, follow_redirects=False, timeout=30) as http:
        page = http.get(http.get(url).headers["location"])
        fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page.text))
        form = {**fields, "api_key": "demo-key", "website_id": "demo", "action": "allow"}
        answer = http.post("/consent", data=form, headers={"Origin": issuer})
        if answer.status_code != 303:
            print(f"conformance_consent: the consent page answered {answer.status_code}", file=sys.stderr)
            return 1
        httpx2.get(answer.headers["location"], timeout=30)  # the suite's callback server
    return 0


if __name__ == "__main__":
    sys.exit(main())
