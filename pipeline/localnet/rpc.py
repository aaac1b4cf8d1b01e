"""Solana JSON-RPC methods over a :class:`LocalChain`, answered with solders' response types.

Each method takes the request's positional ``params`` and returns the response object whose
``to_json()`` solana-py parses unchanged (only the request id is patched in). Methods and
shapes follow the Solana JSON-RPC API; unknown methods get -32601, bad params -32602.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, Final

from solders.epoch_info import EpochInfo
from solders.hash import Hash
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.rpc.responses import (
    GetAccountInfoResp,
    GetBalanceResp,
    GetBlockHeightResp,
    GetEpochInfoResp,
    GetLatestBlockhashResp,
    GetMultipleAccountsResp,
    GetSignatureStatusesResp,
    GetSlotResp,
    GetTokenAccountBalanceResp,
    GetTokenAccountsByOwnerResp,
    GetTransactionResp,
    IsBlockhashValidResp,
    RequestAirdropResp,
    RpcBlockhash,
    RpcKeyedAccount,
    RpcResponseContext,
    RpcSimulateTransactionResult,
    SendTransactionResp,
    SimulateTransactionResp,
)
from solders.signature import Signature
from solders.transaction import VersionedTransaction
from solders.transaction_status import (
    EncodedConfirmedTransactionWithStatusMeta,
    EncodedTransactionWithStatusMeta,
    TransactionConfirmationStatus,
    TransactionStatus,
    UiTransactionStatusMeta,
)

from pipeline.localnet.chain import ChainError, LocalChain
from pipeline.solana.tokens import TOKEN_PROGRAM_ID, unpack_account

INVALID_PARAMS: Final = -32602
METHOD_NOT_FOUND: Final = -32601
_EPOCH_SLOTS: Final = 432_000  # mainnet's epoch length; the localnet never leaves epoch 0


class RpcMethods:
    """The JSON-RPC methods the executor (and solana-py's helpers) use."""

    def __init__(self, chain: LocalChain, known_accounts: Callable[[], list[Pubkey]]) -> None:
        self._chain = chain
        self._known_accounts = known_accounts  # LiteSVM keeps no owner index
        self._table: dict[str, Callable[[list[Any]], Any]] = {
            "getLatestBlockhash": self._latest_blockhash,
            "getBlockHeight": lambda _p: GetBlockHeightResp(self._chain.height),
            "getSlot": lambda _p: GetSlotResp(self._chain.height),
            "getEpochInfo": self._epoch_info,
            "isBlockhashValid": self._blockhash_valid,
            "sendTransaction": self._send,
            "simulateTransaction": self._simulate,
            "getSignatureStatuses": self._statuses,
            "getTransaction": self._transaction,
            "getBalance": self._balance,
            "getAccountInfo": self._account_info,
            "getMultipleAccounts": self._multiple_accounts,
            "getTokenAccountBalance": self._token_balance,
            "getTokenAccountsByOwner": self._token_accounts,
            "requestAirdrop": self._airdrop,
        }

    def call(self, method: str, params: list[Any]) -> str:
        """The JSON result of one method, without the envelope id; raises ChainError."""
        handler = self._table.get(method)
        if handler is None:
            raise ChainError(METHOD_NOT_FOUND, f"Method not found: {method}")
        try:
            result: str = handler(params).to_json()
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            raise ChainError(INVALID_PARAMS, f"Invalid params: {exc}") from None
        return result

    def _context(self) -> RpcResponseContext:
        return RpcResponseContext(self._chain.height)

    def _epoch_info(self, _params: list[Any]) -> Any:
        height = self._chain.height  # one slot per block here: slot == block height
        return GetEpochInfoResp(EpochInfo(epoch=0, slot_index=height, slots_in_epoch=_EPOCH_SLOTS,
                                          absolute_slot=height, block_height=height,
                                          transaction_count=None))

    def _latest_blockhash(self, _params: list[Any]) -> Any:
        blockhash, last_valid = self._chain.latest_blockhash()
        return GetLatestBlockhashResp(RpcBlockhash(blockhash, last_valid), self._context())

    def _blockhash_valid(self, params: list[Any]) -> Any:
        valid = self._chain.blockhash_valid(Hash.from_string(params[0]))
        return IsBlockhashValidResp(valid, self._context())  # type: ignore[call-arg]

    def _send(self, params: list[Any]) -> Any:
        config = params[1] if len(params) > 1 else {}
        tx = _decode_tx(params[0], config.get("encoding", "base58"))
        if not config.get("skipPreflight", False):
            simulation = self._chain.simulate(tx, [], verify_signatures=True)
            if simulation.err is not None:
                raise ChainError(-32002, f"Transaction simulation failed: {simulation.err}")
        return SendTransactionResp(self._chain.submit(tx))

    def _simulate(self, params: list[Any]) -> Any:
        config = params[1] if len(params) > 1 else {}
        tx = _decode_tx(params[0], config.get("encoding", "base58"))
        if config.get("sigVerify") and config.get("replaceRecentBlockhash"):
            raise ChainError(INVALID_PARAMS, "sigVerify may not be used with "
                                             "replaceRecentBlockhash")
        if config.get("sigVerify") and not tx.verify_with_results():
            raise ChainError(-32003, "Transaction signature verification failure")
        if config.get("replaceRecentBlockhash"):
            tx = _with_blockhash(tx, self._chain.latest_blockhash()[0])
        wanted = [Pubkey.from_string(a) for a in (config.get("accounts") or {}).get(
            "addresses", [])]
        sim = self._chain.simulate(tx, wanted)
        balances = sim.balances
        result = RpcSimulateTransactionResult(
            err=sim.err, logs=sim.logs, accounts=[sim.accounts.get(key) for key in wanted],
            units_consumed=sim.compute_units, pre_balances=balances.pre_lamports,
            post_balances=balances.post_lamports, pre_token_balances=balances.pre_tokens,
            post_token_balances=balances.post_tokens)
        return SimulateTransactionResp(result, self._context())  # type: ignore[call-arg]

    def _multiple_accounts(self, params: list[Any]) -> Any:
        # Accounts first, context after: the slot answered is never older than the state.
        accounts = [self._chain.account(Pubkey.from_string(key)) for key in params[0]]
        return GetMultipleAccountsResp(accounts, self._context())

    def _statuses(self, params: list[Any]) -> Any:
        statuses: list[TransactionStatus | None] = []
        for text in params[0]:
            done = self._chain.status(Signature.from_string(text))
            statuses.append(None if done is None else TransactionStatus(
                done.slot, self._chain.height - done.slot, done.err, done.err,
                TransactionConfirmationStatus.Confirmed))
        return GetSignatureStatusesResp(statuses, self._context())

    def _transaction(self, params: list[Any]) -> Any:
        done = self._chain.status(Signature.from_string(params[0]))
        if done is None:
            return GetTransactionResp(None)
        b = done.balances
        meta = UiTransactionStatusMeta(
            err=done.err, fee=done.fee_lamports, pre_balances=b.pre_lamports,
            post_balances=b.post_lamports, log_messages=done.logs,
            pre_token_balances=b.pre_tokens, post_token_balances=b.post_tokens,
            compute_units_consumed=done.compute_units)
        return GetTransactionResp(EncodedConfirmedTransactionWithStatusMeta(
            done.slot, EncodedTransactionWithStatusMeta(done.tx, meta, 0), done.block_time_s))

    def _balance(self, params: list[Any]) -> Any:
        account = self._chain.account(Pubkey.from_string(params[0]))
        return GetBalanceResp(account.lamports if account else 0, self._context())

    def _account_info(self, params: list[Any]) -> Any:
        return GetAccountInfoResp(self._chain.account(Pubkey.from_string(params[0])),
                                  self._context())

    def _token_balance(self, params: list[Any]) -> Any:
        account = self._chain.account(Pubkey.from_string(params[0]))
        if account is None or account.owner != TOKEN_PROGRAM_ID:
            raise ChainError(INVALID_PARAMS, "Invalid param: not a Token account")
        return GetTokenAccountBalanceResp(self._chain.token_amount(account), self._context())

    def _token_accounts(self, params: list[Any]) -> Any:
        owner = Pubkey.from_string(params[0])
        wanted_mint = params[1].get("mint")
        keyed = []
        for key, account in self._chain.token_accounts(owner, self._known_accounts()):
            mint = unpack_account(bytes(account.data))[0]
            if wanted_mint is None or str(mint) == wanted_mint:
                keyed.append(RpcKeyedAccount(key, account))
        return GetTokenAccountsByOwnerResp(keyed, self._context())

    def _airdrop(self, params: list[Any]) -> Any:
        return RequestAirdropResp(self._chain.airdrop(Pubkey.from_string(params[0]),
                                                      int(params[1])))


def _decode_tx(text: str, encoding: str) -> VersionedTransaction:
    if encoding != "base64":
        raise ChainError(INVALID_PARAMS, "localnet accepts only base64-encoded transactions")
    return VersionedTransaction.from_bytes(base64.b64decode(text))


def _with_blockhash(tx: VersionedTransaction, blockhash: Hash) -> VersionedTransaction:
    """``tx`` with its message's recent blockhash replaced (``replaceRecentBlockhash``)."""
    m = tx.message
    if isinstance(m, MessageV0):
        message: Message | MessageV0 = MessageV0(m.header, m.account_keys, blockhash,
                                                 m.instructions, m.address_table_lookups)
    else:
        message = Message.new_with_compiled_instructions(
            m.header.num_required_signatures, m.header.num_readonly_signed_accounts,
            m.header.num_readonly_unsigned_accounts, m.account_keys, blockhash, m.instructions)
    return VersionedTransaction.populate(message, tx.signatures)


def envelope(request_id: Any, result_json: str) -> bytes:
    """Patch the caller's id into a solders response (which always carries id 0)."""
    body = json.loads(result_json)
    body["id"] = request_id
    return json.dumps(body).encode()


def error_envelope(request_id: Any, code: int, message: str,
                   data: dict[str, Any] | None = None) -> bytes:
    """A JSON-RPC error; ``data`` as a real node sends it (solders requires it for some codes,
    e.g. -32005 ``{"numSlotsBehind": n}``)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return json.dumps({"jsonrpc": "2.0", "error": error, "id": request_id}).encode()
