// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title The secure-aggregation board's events and errors.
/// @notice Where the trainers of a secure-aggregation market publish, by content ID, what lets
/// anyone rebuild a round's aggregate without seeing one trainer's model (fedmarket/secagg,
/// contracts/README.md "Secure aggregation"): each trainer's key bundle once, and after each
/// round its share reveal. The board fixes, on chain and the same for everyone, who takes part in
/// a round and who survived it, so that no honest holder reveals both seeds of one trainer. A
/// holder whose shares fail the dealer's commitments complains, and the dealer answers with that
/// holder's shares in the clear: readers leave out of a round every dealer with a complaint that
/// no valid answer met before the round opened, so no dealer can deal shares that stop a round.
interface ISecureAggregation {
    /// What the board recorded for one round of one market.
    struct RoundReveals {
        bool open;
        uint128 participants; // bit i: trainer i posted its keys before the round opened
        uint128 survivors; // participants who submitted and were not excluded
        uint128 revealed; // bit i: trainer i revealed its shares
    }

    event KeysPosted(address indexed market, address indexed trainer, uint32 index, uint32 firstRound, bytes32 cid);
    event RevealsOpened(address indexed market, uint32 indexed round, uint128 participants, uint128 survivors);
    event SharesRevealed(
        address indexed market, uint32 indexed round, address indexed trainer, uint32 index, bytes32 cid
    );
    /// Holder `holder` says dealer `dealer`'s shares for it fail their commitments; from `firstRound` on.
    event Complained(address indexed market, uint32 indexed dealer, uint32 holder, uint32 firstRound);
    /// Dealer `dealer` answers holder `holder`'s complaint with its shares, stored under `cid`.
    event Answered(address indexed market, uint32 indexed dealer, uint32 holder, uint32 firstRound, bytes32 cid);

    error UnknownMarket(address market);
    error NotTraining(address market);
    error NotActive(address market, address trainer);
    error RoundInProgress(address market, uint32 round);
    error KeysAlreadyPosted(address market, address trainer);
    error InvalidCid();
    error NotAggregator(address market, address account);
    error RoundNotOpen(address market, uint32 round);
    error SubmissionsStillOpen(address market, uint32 round, uint64 deadline);
    error RevealsAlreadyOpen(address market, uint32 round);
    error RevealsNotOpen(address market, uint32 round);
    error AlreadyRevealed(address market, uint32 round, address trainer);
    error NotKeyed(address market, uint32 dealer);
    error OwnKeys(address market, address trainer);
    error AlreadyComplained(address market, uint32 dealer, uint32 holder);
    error NoComplaint(address market, uint32 dealer, uint32 holder);
    error AlreadyAnswered(address market, uint32 dealer, uint32 holder);
}
