"""The node's Ed25519 signing key: signs audit checkpoints and access tokens."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


@dataclass(frozen=True)
class NodeKey:
    private: Ed25519PrivateKey
    kid: str

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    def private_pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def derive(self, purpose: str) -> bytes:
        """A 32-byte secret for one purpose (cursor signing, pseudonyms), derived from the key."""
        raw = self.private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return hashlib.sha256(f"minyun.{purpose}\0".encode() + raw).digest()

    def sign(self, message: bytes) -> str:
        """A base64url Ed25519 signature of `message`."""
        return base64.urlsafe_b64encode(self.private.sign(message)).decode()

    def verify(self, message: bytes, signature: str) -> bool:
        """Whether `signature` is this key's signature of `message`."""
        try:
            self.public.verify(base64.urlsafe_b64decode(signature.encode()), message)
        except (InvalidSignature, ValueError):
            return False
        return True


def _kid(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@lru_cache(maxsize=8)
def load_node_key(var_dir: Path) -> NodeKey:
    """The key in var_dir/node-key.pem, created on first use and never committed."""
    path = var_dir / "node-key.pem"
    if path.exists():
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
    else:
        private = Ed25519PrivateKey.generate()
        key = NodeKey(private, _kid(private.public_key()))
        path.touch(mode=0o600)
        path.write_bytes(key.private_pem())
    return NodeKey(private, _kid(private.public_key()))
