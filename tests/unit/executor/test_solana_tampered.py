"""A lying venue gets no signature: tampered swap transactions are refused before signing.

Each maker below quotes honestly but returns a transaction that does something else. The
venue must refuse it (REJECTED, no NEW report: the taker never signed, nothing was sent),
count the refusal, and the chain must be untouched.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from localnet_kit import collect, finals, intent, make_venue, running_localnet, signatures_of
from prometheus_client import CollectorRegistry
from solders.instruction import AccountMeta, Instruction
from solders.message import MessageV0, to_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from pipeline.localnet.maker import Maker, transfer_checked
from pipeline.localnet.world import Asset
from pipeline.records import OrderStatus, RejectReason, Side

TOKEN_2022 = Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")


class _Lying(Maker):
    """Builds the honest legs, then lets ``tamper`` rewrite the instruction list."""

    payer_is_maker = False

    def tamper(self, legs: list[Instruction], taker: Pubkey, source: Asset,
               target: Asset) -> list[Instruction]:
        raise NotImplementedError

    def _build(self, taker: Pubkey, source: Asset, target: Asset, amount: int,
               out_amount: int, *, quote_id: str) -> tuple[VersionedTransaction, int]:
        world, maker = self._world, self._world.maker.pubkey()
        legs = [transfer_checked(world.token_account(taker, source.name), source.mint,
                                 world.token_account(maker, source.name), taker,
                                 amount=amount, decimals=source.decimals),
                transfer_checked(world.token_account(maker, target.name), target.mint,
                                 world.token_account(taker, target.name), maker,
                                 amount=out_amount, decimals=target.decimals)]
        blockhash, last_valid = self._chain.latest_blockhash()
        payer = maker if self.payer_is_maker else taker
        message = MessageV0.try_compile(payer, self.tamper(legs, taker, source, target), [],
                                        blockhash)
        signature = world.maker.sign_message(to_bytes_versioned(message))
        signers = message.account_keys[: message.header.num_required_signatures]
        return VersionedTransaction.populate(message, [
            signature if key == maker else Signature.default() for key in signers]), last_valid


class PaysLess(_Lying):
    def tamper(self, legs: list[Instruction], taker: Pubkey, source: Asset,
               target: Asset) -> list[Instruction]:
        maker = self._world.maker.pubkey()
        honest = legs[1]
        amount = int.from_bytes(honest.data[1:9], "little")
        return [legs[0], transfer_checked(
            self._world.token_account(maker, target.name), target.mint,
            self._world.token_account(taker, target.name), maker, amount=amount * 99 // 100,
            decimals=target.decimals)]


class OtherProgram(_Lying):
    def tamper(self, legs: list[Instruction], taker: Pubkey, source: Asset,
               target: Asset) -> list[Instruction]:
        return [*legs, Instruction(TOKEN_2022, bytes([3]), [AccountMeta(taker, True, True)])]


class DrainsSol(_Lying):
    """Only allowed programs, but a System transfer takes 1 SOL of the taker's lamports."""

    def tamper(self, legs: list[Instruction], taker: Pubkey, source: Asset,
               target: Asset) -> list[Instruction]:
        return [*legs, transfer(TransferParams(from_pubkey=taker,
                                               to_pubkey=self._world.maker.pubkey(),
                                               lamports=10**9))]


class TakesMoreInput(_Lying):
    """A second leg takes another half of the input token from the taker."""

    def tamper(self, legs: list[Instruction], taker: Pubkey, source: Asset,
               target: Asset) -> list[Instruction]:
        amount = int.from_bytes(legs[0].data[1:9], "little")
        return [*legs, transfer_checked(
            self._world.token_account(taker, source.name), source.mint,
            self._world.token_account(self._world.maker.pubkey(), source.name), taker,
            amount=amount // 2, decimals=source.decimals)]


class TakerNotSigner(_Lying):
    """The maker pays the fee and signs alone: the taker's signature is not required."""

    payer_is_maker = True

    def tamper(self, legs: list[Instruction], taker: Pubkey, source: Asset,
               target: Asset) -> list[Instruction]:
        return [legs[1]]


@pytest.mark.parametrize(("maker_class", "why"), [
    (PaysLess, "gives"),
    (OtherProgram, "not allowed"),
    (DrainsSol, "lamports"),
    (TakesMoreInput, "the swap takes"),
    (TakerNotSigner, "not the fee payer"),
])
def test_a_tampered_swap_is_refused_before_signing(tmp_path: Path, maker_class: type[Maker],
                                                   why: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    with running_localnet(tmp_path, maker_class=maker_class) as net:
        trader = net.world.trader.pubkey()
        before = (net.trader_tokens(), net.chain.account(trader))
        registry = CollectorRegistry()
        venue = make_venue(net, registry=registry)
        try:
            venue.submit(intent(1, Side.SELL, 1.0, 100.0), 0)
            reports = collect(venue, {1})
        finally:
            venue.close()
        final = finals(reports)[1]
        assert final["status"] == OrderStatus.REJECTED
        assert final["reject_reason"] == RejectReason.VENUE_ERROR
        assert signatures_of(reports, OrderStatus.NEW) == [], "a signature left the process"
        assert bytes(final["venue_ref"]) == b""
        assert registry.get_sample_value("pipeline_solana_refused_total") == 1
        assert any(why in record.getMessage() for record in caplog.records), caplog.text
        account = net.chain.account(trader)
        assert account is not None
        assert before[1] is not None
        assert (net.trader_tokens(), account.lamports) == (before[0], before[1].lamports)
