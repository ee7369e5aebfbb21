"""Independent witness: verifies an acgs access token with PyJWT against the published JWKS.

Reads {"token", "jwks", "aud", "iss"} as JSON on stdin; prints the verified claims as JSON, or
exits non-zero with PyJWT's error.
"""
import json
import sys

import jwt

data = json.load(sys.stdin)
header = jwt.get_unverified_header(data["token"])
keys = jwt.PyJWKSet.from_dict(data["jwks"])
key = next(k for k in keys.keys if k.key_id == header["kid"])
claims = jwt.decode(
    data["token"],
    key=key.key,
    algorithms=["EdDSA"],
    audience=data["aud"],
    issuer=data["iss"],
    options={"require": ["exp", "iat", "sub", "jti", "aud", "iss"]},
)
print(json.dumps(claims))
