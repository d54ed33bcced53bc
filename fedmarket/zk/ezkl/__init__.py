"""The EZKL (Halo2/KZG) proof system: builds cached by circuit hash, the SRS, witnesses and proofs,
Poseidon commitments, and the Solidity verifiers EZKL generates. Only this package imports `ezkl`;
a second proof system would sit beside it under fedmarket/zk/."""
