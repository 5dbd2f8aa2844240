"""Sign a JWT with PyJWT and Python's `cryptography`, as an operator's own tooling would:
`pyjwt_sign.py <private key PEM> <kid> <claims JSON>` prints the token."""

import json
import sys

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key


def main() -> None:
    key_path, kid, claims = sys.argv[1:4]
    with open(key_path, "rb") as file:
        key = load_pem_private_key(file.read(), password=None)
    print(jwt.encode(json.loads(claims), key, algorithm="EdDSA", headers={"kid": kid}))


if __name__ == "__main__":
    main()
