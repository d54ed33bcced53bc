"""Markets played by one process: the attacks of the test and benchmark suites, federated training
with attackers off chain, and the enrolment of every trainer of a market."""
