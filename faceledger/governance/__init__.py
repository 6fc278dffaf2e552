"""Who may do what for which purpose: the gate every interface passes, the policy, keys and the ledger."""
