"""A real store of two synced VPN pages, its disk answer cache, and a real answer flow over it
with Claude behind a given client: what the streaming tests, the model-fault tests and
bench/slack.py run the real flow on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import anthropic

from bot.answerer import ClaudeAnswerer
from bot.condense import condense_without_model
from bot.flow import Flow
from fakes.connector import MemoryConnector
from fakes.embedder import HashingEmbedder
from store.cache import DiskAnswerCache, StoreHashes
from store.db import Database
from store.schema import bind_embedder
from store.search import Retriever
from store.tokens import TokenCounter
from sync.chunking import Chunker
from sync.engine import SyncEngine
from sync.freshness import CacheInvalidator

QUESTION = "How do I connect to the VPN on Windows?"


@dataclass
class VpnStore:
    db: Database
    cache: DiskAnswerCache
    embedder: HashingEmbedder

    def flow(self, client: anthropic.Anthropic, model: str, **answerer: float) -> Flow:
        return Flow(
            db=self.db,
            embedder=self.embedder,
            retriever=Retriever(self.db, TokenCounter()),
            cache=self.cache,
            answerer=ClaudeAnswerer(client, model, **answerer),
            condense=condense_without_model,
        )


def vpn_store(db: Database, cache_dir: Path) -> VpnStore:
    """The Windows page (id 1) and the macOS page (id 2), synced into ``db``; the caller
    closes the cache."""
    embedder = HashingEmbedder()
    bind_embedder(db, embedder.identity)
    cache = DiskAnswerCache(cache_dir, StoreHashes(db))
    source = MemoryConnector(scopes=("ENG",))
    source.put("1", "VPN on Windows", "Windows laptops connect with the NWP-AOVPN profile.")
    source.put("2", "VPN on macOS", "Mac laptops connect with the WireGuard app.")
    SyncEngine(db, embedder, Chunker(TokenCounter()), CacheInvalidator(db, cache)).run(source)
    return VpnStore(db, cache, embedder)
