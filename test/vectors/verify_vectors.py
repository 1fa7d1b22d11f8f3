"""An independent implementation of envseal format v1 in Python (cryptography package),
checking the test vectors in docs/format.md. It shares no code with the TypeScript
implementation: if both agree on the vectors, the spec is what both implement.

Usage: python3 verify_vectors.py docs/format.md   (exit 0 and "N passed, 0 failed")
"""
import base64
import json
import re
import struct
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def b64(text):
    raw = base64.b64decode(text, validate=True)
    assert base64.b64encode(raw).decode() == text, "non-canonical base64"
    return raw


def hkdf(dek, salt, info):
    return HKDF(algorithm=hashes.SHA512(), length=32, salt=salt, info=info).derive(dek)


def encode_context(pairs):
    items = sorted((k.encode(), v.encode()) for k, v in pairs.items())
    out = struct.pack(">H", len(items))
    for k, v in items:
        out += struct.pack(">H", len(k)) + k + struct.pack(">H", len(v)) + v
    return out


LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def namespace_list(binding):
    """The canonical text of scope namespaces' list; anything not canonical is refused."""
    names = binding["namespaces"]
    assert 1 <= len(names) <= 32, "1 to 32 namespaces"
    assert all(len(n) <= 63 and LABEL.fullmatch(n) for n in names), "DNS-1123 labels"
    assert [n.encode() for n in names] == sorted({n.encode() for n in names}), "sorted, no duplicates"
    return ",".join(names)


def aad(suite, envelope_id, binding, key):
    scope = binding["scope"]
    entries = {
        "envseal.dev/format": "1",
        "envseal.dev/suite": suite,
        "envseal.dev/envelope": envelope_id,
        "envseal.dev/scope": scope,
        "envseal.dev/namespace": "" if scope in ("cluster", "namespaces") else binding["namespace"],
        "envseal.dev/name": binding["name"] if scope in ("strict", "namespaces") else "",
        "envseal.dev/key": key,
    }
    if scope == "namespaces":
        entries["envseal.dev/namespaces"] = namespace_list(binding)
    return encode_context(entries)


def kms_context(binding):
    scope = binding["scope"]
    if scope == "namespaces":
        assert binding["namespace"] in binding["namespaces"], "namespace not in the list"
        return {
            "envseal.dev/scope": scope,
            "envseal.dev/namespace": binding["namespace"],
            "envseal.dev/name": binding["name"],
            "envseal.dev/namespaces": namespace_list(binding),
        }
    ctx = {"envseal.dev/scope": scope}
    if scope != "cluster":
        ctx["envseal.dev/namespace"] = binding["namespace"]
    if scope == "strict":
        ctx["envseal.dev/name"] = binding["name"]
    return ctx


def check(doc):
    passed = failed = 0
    for vector in doc["vectors"]:
        name = vector["description"]
        try:
            dek = bytes.fromhex(vector["dataKey"])
            salt = b64(vector["envelopeId"])
            assert len(salt) == 32, "envelope id must be 32 bytes"
            value_key = hkdf(dek, salt, b"envseal/v1 value-key")
            assert value_key.hex() == vector["valueKey"], "value key"
            assert hkdf(dek, salt, b"envseal/v1 commitment") == b64(vector["commitment"]), "commitment"
            assert kms_context(vector["binding"]) == vector["kmsEncryptionContext"], "KMS encryption context"
            for ns, ctx in vector.get("kmsEncryptionContextsByNamespace", {}).items():
                assert kms_context(dict(vector["binding"], namespace=ns)) == ctx, "KMS encryption context for " + ns
            for value in vector["values"]:
                ad = aad(doc["suite"], vector["envelopeId"], vector["binding"], value["key"])
                assert ad.hex() == value["aad"], "aad of " + value["key"]
                sealed = b64(value["sealed"])
                nonce = bytes.fromhex(value["nonce"])
                assert sealed[:12] == nonce, "nonce prefix"
                plain = AESGCM(value_key).decrypt(nonce, sealed[12:], ad)
                assert plain.decode("utf-8") == value["plaintext"], "plaintext of " + value["key"]
                assert AESGCM(value_key).encrypt(nonce, value["plaintext"].encode(), ad) == sealed[12:], "re-encryption"
            passed += 1
        except Exception as error:  # report and go on to the next vector
            failed += 1
            print(f"FAIL {name}: {error!r}")
    return passed, failed


def main():
    text = open(sys.argv[1], encoding="utf-8").read()
    match = re.search(r"```json test-vectors\n(.*?)\n```", text, re.S)
    if not match:
        print("no ```json test-vectors block found")
        return 2
    passed, failed = check(json.loads(match.group(1)))
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
