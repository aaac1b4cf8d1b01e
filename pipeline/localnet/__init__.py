"""An offline Solana venue: a JSON-RPC server on a LiteSVM runtime and a local market maker.

``pipeline localnet`` runs both on 127.0.0.1 so that the Solana venue of the executor signs,
sends and confirms real transactions with no network; ``pipeline run --env localnet`` starts
it alongside the four processes.
"""
