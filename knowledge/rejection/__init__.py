"""The rejection gate: decide which group messages are real questions about the knowledge base.

``gate.RejectionGate`` is the object the bot uses; the rest is how it is fitted (calibrate,
model, features, examples), stored (store, files) and drawn (curve).
"""
