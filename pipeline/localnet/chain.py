"""A local Solana chain: LiteSVM plus the block production a validator would do.

LiteSVM executes transactions for real (signature checks, SPL Token program, rent, fees) but
has no notion of time: it accepts only its latest blockhash, never advances slots and keeps
its clock at Unix time 0. ``LocalChain`` adds what the executor relies on:

- blocks every ``block_interval_s``: queued transactions execute in arrival order, then the
  slot and block height advance, a new blockhash is made and the clock is set to wall time;
- a window of the last ``window_blocks`` blockhashes (LiteSVM's own check is switched off):
  a transaction whose blockhash left the window is dropped, never executed, exactly like an
  expired transaction on mainnet (``lastValidBlockHeight`` = height of its hash + window);
- a status for every processed signature, and a signature seen before is not executed again;
- pre/post SOL and token balances per transaction, for ``getTransaction`` and simulation.

All methods are thread-safe (one lock); the RPC server calls them from its handler threads.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Final

from solders.account import Account
from solders.account_decoder import UiTokenAmount
from solders.clock import Clock
from solders.hash import Hash
from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata, TransactionMetadata
from solders.transaction_status import TransactionErrorType, UiTransactionTokenBalance

from pipeline.solana.tokens import TOKEN_PROGRAM_ID, mint_decimals, unpack_account

MAX_PROCESSING_AGE: Final = 150  # blocks a blockhash stays valid, as on mainnet
FIRST_SLOT: Final = 1


class ChainError(Exception):
    """A request the chain refuses; ``code`` is the JSON-RPC error code to answer with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclasses.dataclass(frozen=True)
class Balances:
    """SOL and token balances of a transaction's accounts, before and after it."""

    pre_lamports: list[int]
    post_lamports: list[int]
    pre_tokens: list[UiTransactionTokenBalance]
    post_tokens: list[UiTransactionTokenBalance]


@dataclasses.dataclass(frozen=True)
class Processed:
    """One executed transaction, kept for getSignatureStatuses and getTransaction."""

    slot: int
    err: TransactionErrorType | None
    tx: VersionedTransaction
    fee_lamports: int
    logs: list[str]
    compute_units: int
    balances: Balances
    block_time_s: int


@dataclasses.dataclass(frozen=True)
class Simulation:
    err: TransactionErrorType | None
    logs: list[str]
    compute_units: int
    balances: Balances
    accounts: dict[Pubkey, Account]


class LocalChain:
    """LiteSVM with blocks, a blockhash window, signature statuses and balances."""

    def __init__(self, window_blocks: int = MAX_PROCESSING_AGE,
                 clock_s: Callable[[], float] = time.time) -> None:
        self._svm = LiteSVM().with_blockhash_check(False)
        self._lock = threading.RLock()
        self._clock_s = clock_s
        self._window_blocks = window_blocks
        self._height = FIRST_SLOT
        self._hashes: collections.OrderedDict[Hash, int] = collections.OrderedDict()
        self._queue: list[VersionedTransaction] = []
        self._queued: set[Signature] = set()
        self._processed: dict[Signature, Processed] = {}
        self.dropped_expired = 0
        self._advance()

    # -- blocks -----------------------------------------------------------------------------
    def produce_block(self) -> int:
        """Execute the queued transactions, then start the next block; returns its height."""
        with self._lock:
            queue, self._queue = self._queue, []
            self._queued.clear()
            for tx in queue:
                self._execute(tx)
            self._height += 1
            self._advance()
            return self._height

    def _advance(self) -> None:
        self._svm.warp_to_slot(self._height)
        self._svm.expire_blockhash()
        clock = self._svm.get_clock()
        self._svm.set_clock(Clock(self._height, clock.epoch_start_timestamp, clock.epoch,
                                  clock.leader_schedule_epoch, int(self._clock_s())))
        self._hashes[self._svm.latest_blockhash()] = self._height
        while len(self._hashes) > self._window_blocks + 1:
            self._hashes.popitem(last=False)

    @property
    def height(self) -> int:
        with self._lock:
            return self._height

    def latest_blockhash(self) -> tuple[Hash, int]:
        """The newest blockhash and the last block height at which it is still valid."""
        with self._lock:
            blockhash = next(reversed(self._hashes))
            return blockhash, self._hashes[blockhash] + self._window_blocks

    def blockhash_valid(self, blockhash: Hash) -> bool:
        with self._lock:
            made_at = self._hashes.get(blockhash)
            return made_at is not None and self._height <= made_at + self._window_blocks

    # -- transactions -----------------------------------------------------------------------
    def submit(self, tx: VersionedTransaction) -> Signature:
        """Queue a transaction for the next block (a duplicate is accepted and ignored)."""
        signature = tx.signatures[0]
        with self._lock:
            if signature in self._processed or signature in self._queued:
                return signature
            if getattr(tx.message, "address_table_lookups", None):
                raise ChainError(-32602, "address lookup tables are not supported by localnet")
            self._queue.append(tx)
            self._queued.add(signature)
        return signature

    def _execute(self, tx: VersionedTransaction) -> None:
        if not self.blockhash_valid(tx.message.recent_blockhash):
            self.dropped_expired += 1  # never lands, like an expired transaction on mainnet
            return
        keys = list(tx.message.account_keys)
        pre = self._snapshot(keys)
        result = self._svm.send_transaction(tx)
        meta = result.meta() if isinstance(result, FailedTransactionMetadata) else result
        err = result.err() if isinstance(result, FailedTransactionMetadata) else None
        assert isinstance(meta, TransactionMetadata)
        post = self._snapshot(keys)
        self._processed[tx.signatures[0]] = Processed(
            slot=self._height, err=err, tx=tx, fee_lamports=meta.fee(), logs=meta.logs(),
            compute_units=meta.compute_units_consumed(),
            balances=_balances(pre, post, self._decimals),
            block_time_s=int(self._clock_s()))

    def simulate(self, tx: VersionedTransaction, addresses: list[Pubkey],
                 verify_signatures: bool = False) -> Simulation:
        """Run ``tx`` against the current state without keeping its effects.

        Like the RPC's ``sigVerify: false`` default, signatures are not checked: a swap is
        simulated before the taker signs it.
        """
        with self._lock:
            if not self.blockhash_valid(tx.message.recent_blockhash):
                raise ChainError(-32002, "Transaction simulation failed: Blockhash not found")
            keys = list(tx.message.account_keys)
            pre = self._snapshot(keys)
            self._svm.with_sigverify(verify_signatures)
            try:
                result = self._svm.simulate_transaction(tx)
            finally:
                self._svm.with_sigverify(True)
            if isinstance(result, FailedTransactionMetadata):
                meta, err = result.meta(), result.err()
                post, after = pre, {key: self._account(key) for key in addresses}
            else:
                meta, err = result.meta(), None
                changed = dict(result.post_accounts())
                after = {key: changed.get(key) or self._account(key) for key in addresses}
                post = [changed.get(key, before) for key, before in zip(keys, pre, strict=True)]
            return Simulation(err, meta.logs(), meta.compute_units_consumed(),
                              _balances(pre, post, self._decimals),
                              {key: a for key, a in after.items() if a is not None})

    def queued_signatures(self) -> list[Signature]:
        with self._lock:
            return list(self._queued)

    def queued(self, signature: Signature) -> bool:
        """True while a received transaction waits for the next block (e.g. blocks paused)."""
        with self._lock:
            return signature in self._queued

    def status(self, signature: Signature) -> Processed | None:
        with self._lock:
            return self._processed.get(signature)

    def processed(self) -> list[tuple[Signature, Processed]]:
        """Every transaction executed so far, in execution order (for the saved record)."""
        with self._lock:
            return list(self._processed.items())

    # -- accounts ---------------------------------------------------------------------------
    def _account(self, key: Pubkey) -> Account | None:
        return self._svm.get_account(key)

    def _snapshot(self, keys: list[Pubkey]) -> list[Account | None]:
        return [self._svm.get_account(key) for key in keys]

    def account(self, key: Pubkey) -> Account | None:
        with self._lock:
            return self._svm.get_account(key)

    def set_account(self, key: Pubkey, account: Account) -> None:
        with self._lock:
            self._svm.set_account(key, account)

    def airdrop(self, key: Pubkey, lamports: int) -> Signature:
        """Credit lamports at once (a faucet); returns the airdrop transaction's signature."""
        with self._lock:
            result = self._svm.airdrop(key, lamports)
            if isinstance(result, FailedTransactionMetadata):
                raise ChainError(-32603, f"airdrop failed: {result.err()}")
            return result.signature()

    def rent_exempt_lamports(self, data_len: int) -> int:
        with self._lock:
            return self._svm.minimum_balance_for_rent_exemption(data_len)

    def token_accounts(self, owner: Pubkey, keys: list[Pubkey]) -> list[tuple[Pubkey, Account]]:
        """The token accounts among ``keys`` owned by ``owner`` (LiteSVM has no index)."""
        found = []
        with self._lock:
            for key in keys:
                account = self._svm.get_account(key)
                if account is not None and account.owner == TOKEN_PROGRAM_ID:
                    try:
                        if unpack_account(bytes(account.data))[1] == owner:
                            found.append((key, account))
                    except ValueError:
                        continue
        return found

    def token_amount(self, account: Account) -> UiTokenAmount:
        """The UI amount of a token account, with the decimals of its mint."""
        mint, _owner, amount = unpack_account(bytes(account.data))
        return _ui_amount(amount, self._decimals(mint))

    def _decimals(self, mint: Pubkey) -> int:
        account = self._svm.get_account(mint)
        return mint_decimals(bytes(account.data)) if account is not None else 0


def _ui_amount(amount: int, decimals: int) -> UiTokenAmount:
    ui = amount / 10**decimals
    return UiTokenAmount(ui, decimals, str(amount), f"{ui:.{decimals}f}".rstrip("0").rstrip("."))


def _balances(pre: list[Account | None], post: list[Account | None],
              decimals: Callable[[Pubkey], int]) -> Balances:
    return Balances([a.lamports if a else 0 for a in pre], [a.lamports if a else 0 for a in post],
                    _token_balances(pre, decimals), _token_balances(post, decimals))


def _token_balances(accounts: list[Account | None],
                    decimals_of: Callable[[Pubkey], int]) -> list[UiTransactionTokenBalance]:
    balances = []
    for index, account in enumerate(accounts):
        if account is None or account.owner != TOKEN_PROGRAM_ID:
            continue
        try:
            mint, owner, amount = unpack_account(bytes(account.data))
        except ValueError:
            continue  # a mint or multisig, not a token account
        balances.append(UiTransactionTokenBalance(index, mint,
                                                  _ui_amount(amount, decimals_of(mint)),
                                                  owner, TOKEN_PROGRAM_ID))
    return balances

