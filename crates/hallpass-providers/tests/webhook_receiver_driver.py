"""Runs the webhook receiver example of docs/access-config.md over recorded calls.

Used by the webhook provider's tests (src/webhook/tests/receiver_doc.rs).
argv[1]: a file holding the example's code, which defines verify(secret, headers, body).
stdin:   a JSON list of {"secret": str, "headers": {name: value}, "body": base64 of the raw body}.
stdout:  a JSON list with verify's answer (true or false) for each.
"""
import base64
import json
import sys

namespace = {}
with open(sys.argv[1], encoding="utf-8") as example:
    exec(compile(example.read(), "docs/access-config.md (python example)", "exec"), namespace)
verify = namespace["verify"]

answers = []
for call in json.load(sys.stdin):
    answer = verify(call["secret"], call["headers"], base64.b64decode(call["body"]))
    if not isinstance(answer, bool):
        sys.exit(f"verify returned {answer!r}, not True or False")
    answers.append(answer)
print(json.dumps(answers))
