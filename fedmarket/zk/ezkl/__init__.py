"""The EZKL (Halo2/KZG) proof system: builds cached by circuit hash, the SRS, witnesses and proofs,
Poseidon commitments, and the Solidity verifiers EZKL generates. Only this package imports `ezkl`;
a second proof system would sit beside it under fedmarket/zk/."""

import os

# Keys are read without checking every curve point: they are this cache's own files (a corrupt one
# gives proofs the verifier rejects, never a false one), and the checks cost a proof seconds.
# The bytes on disk are the same either way; set EZKL_KEY_FORMAT to check them.
os.environ.setdefault("EZKL_KEY_FORMAT", "raw-bytes-unchecked")
