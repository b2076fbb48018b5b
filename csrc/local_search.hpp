// Local search on groupings: add, swap (exchange a chosen row for another) and merge (two chosen
// rows out, one in, and the freed budget unit re-used by the best add) moves, best improvement.
#pragma once
#include <cstdint>
#include <vector>

#include "deadline.hpp"
#include "objective.hpp"
#include "task_index.hpp"

namespace mtgfast {

// Improves `rows` (a valid set: every task covered under Singleton, |rows| <= budget) until no move
// gains more than 1e-12 relative, or `max_rounds` moves were made. Returns the improved set
// (a valid set again, never worse unless kicked). Rows are indices into p. `merge`: try merge
// moves when add and swap are stuck. A non-zero `kick_seed` makes the first move a swap drawn
// from the `kick_choices` best ones, improving or not (a perturbation). `index`: p's index
// (built here when null). The moves, their order and every tie-break are those of
// local_search_scan; only the candidates that cannot win are no longer scanned. `deadline`
// (optional): no move is started once it has passed (the set so far is returned).
std::vector<std::uint32_t> local_search(const Problem& p, std::vector<std::uint32_t> rows,
                                        int budget, int max_rounds = 200, bool merge = true,
                                        std::uint64_t kick_seed = 0, int kick_choices = 16,
                                        const TaskIndex* index = nullptr,
                                        const Deadline* deadline = nullptr);

// The former routine, which scans every candidate for every move: the reference local_search is
// tested against (same arguments, same result).
std::vector<std::uint32_t> local_search_scan(const Problem& p, std::vector<std::uint32_t> rows,
                                             int budget, int max_rounds = 200, bool merge = true,
                                             std::uint64_t kick_seed = 0, int kick_choices = 16);

}  // namespace mtgfast
