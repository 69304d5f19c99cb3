"""Send one HTTP request to a server on 127.0.0.1 and print the response as one JSON line.

The docker backend runs this script with ``docker exec`` inside a container that has no network but
loopback, to reach A0 there. Standard library only, Python 3.8 or newer::

    python container_http.py REQUEST

REQUEST is base64 of a JSON object, or ``@PATH`` of a file that contains that JSON object:
``{"port": 80, "method": "GET", "path": "/api/health", "headers": {...}, "body": BASE64 or null,
"timeout": SECONDS}``.

Standard output: ``{"status": 200, "headers": [[name, value], ...], "body": BASE64}`` with exit code
0. A connection error or a timeout prints ``{"error": "ConnectionRefusedError: ..."}`` with exit
code 3. An invalid REQUEST exits with code 2 and a message on standard error.
"""

import base64
import http.client
import json
import sys

HOST = "127.0.0.1"
EXIT_CONNECTION_ERROR = 3


def load_request(argument: str) -> dict:
    """Return the request object of the REQUEST argument. Raises ValueError when it is invalid."""
    if argument.startswith("@"):
        with open(argument[1:], encoding="utf-8") as file:
            request = json.load(file)
    else:
        request = json.loads(base64.b64decode(argument.encode("ascii"), validate=True))
    if not isinstance(request, dict):
        raise ValueError("the request is not a JSON object")
    for name, kind in (("port", int), ("method", str), ("path", str)):
        if not isinstance(request.get(name), kind):
            raise ValueError(f"the request has no valid {name!r}")
    return request


def send(request: dict) -> dict:
    """Send the request and return the response object printed on standard output. Raises OSError."""
    body = request.get("body")
    payload = base64.b64decode(body) if body is not None else None
    connection = http.client.HTTPConnection(HOST, request["port"], timeout=float(request.get("timeout") or 30))
    try:
        connection.request(request["method"], request["path"], body=payload, headers=request.get("headers") or {})
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    return {
        "status": response.status,
        "headers": [[name, value] for name, value in response.getheaders()],
        "body": base64.b64encode(data).decode("ascii"),
    }


def main(argv: list) -> int:
    if len(argv) != 1:
        print("usage: container_http.py REQUEST (base64 of a JSON request, or @FILE)", file=sys.stderr)
        return 2
    try:
        request = load_request(argv[0])
    except (OSError, ValueError) as error:
        print(f"container_http.py: invalid request: {error}", file=sys.stderr)
        return 2
    try:
        response = send(request)
    except (OSError, http.client.HTTPException) as error:
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
        return EXIT_CONNECTION_ERROR
    print(json.dumps(response))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
