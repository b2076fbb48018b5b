#include "beam.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

namespace mtgfast {

namespace {

struct State {
  std::vector<std::uint32_t> rows;  // ascending
  std::vector<double> cur;          // per task: gain served (covered) or alone_value (uncovered)
  std::vector<float> thr;           // lanes8 lanes: cur, or alone_value - K for uncovered tasks
  std::vector<float> flo;           // lanes8 lanes: a lane adds g - thr above this (0 covered;
                                    // -inf uncovered in the floor kernel: its sign is kept)
  mask_t uncovered = 0;             // always 0 under Alone (every task has its free fallback)
  double value = 0.0;               // sum of cur: the completed value
  int cost = 0;                     // |rows| + popcount(uncovered)
};

struct Child {
  double value;
  int cost;
  std::uint32_t parent;
  std::uint32_t row;
};

// Ranking of children: higher value, then lower cost; equal keys keep scan order (row, parent).
inline bool better(double v1, int c1, const Child& b) noexcept {
  return v1 > b.value || (v1 == b.value && c1 < b.cost);
}

struct Record {
  double value = kNegInf;
  int layer = -1;
  std::uint32_t parent = 0;
  std::uint32_t row = 0;
};

bool contains(const std::vector<std::uint32_t>& rows, std::uint32_t r) {
  return std::binary_search(rows.begin(), rows.end(), r);
}

// rows(pa) + {ra} == rows(pb) + {rb}, both parents of the same size and not containing their row.
bool same_set(const State& pa, std::uint32_t ra, const State& pb, std::uint32_t rb) {
  if (ra == rb) return pa.rows == pb.rows;
  // Then rb must be in pa, ra in pb, and the rest equal.
  if (!contains(pa.rows, rb) || !contains(pb.rows, ra)) return false;
  std::vector<std::uint32_t> a = pa.rows, b = pb.rows;
  a.push_back(ra);
  b.push_back(rb);
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  return a == b;
}

struct LayerScan {
  const Problem* p;
  const float* g32;      // rows x lanes, float copy of the gains (-inf outside): half the bytes
  std::size_t lanes;     // n_tasks rounded up to 8
  const std::vector<State>* beam;
  std::size_t width;
  double K;
  bool floor;            // the floor kernel (K = 0, uncovered lanes keep their sign)
  bool alone;
  int layer;
  int max_cost;
  std::vector<Child>* top;
  std::vector<Record>* best;
  const Deadline* deadline;
  bool* expired;         // set when the deadline stopped this layer's scan
};

// Task j's gain in parent + a row that contains j (g: the row's gains): the row's where j was
// uncovered, else the better of the two.
inline double joined_gain(const State& parent, const double* g, std::size_t j) {
  return (parent.uncovered >> j) & 1 ? g[j] : std::max(parent.cur[j], g[j]);
}

// The completed value of parent + row in double, summed over tasks in order: exactly what
// extend() gives the child's state (equal task gains give equal values, bit for bit).
double child_value(const Problem& p, const State& st, std::uint32_t row) {
  const double* g = p.row(row);
  const mask_t mask = p.masks[row];
  double v = 0.0;
  for (std::size_t j = 0; j < std::size_t(p.n_tasks); ++j)
    v += (mask >> j) & 1 ? joined_gain(st, g, j) : st.cur[j];
  return v;
}

void consider(const LayerScan& L, std::uint32_t s, std::uint32_t i, double value, int cost) {
  const auto& beam = *L.beam;
  auto& top = *L.top;
  auto& best = *L.best;
  if (cost <= L.max_cost && value > best[std::size_t(cost)].value && !contains(beam[s].rows, i))
    best[std::size_t(cost)] = Record{value, L.layer, s, i};
  if (top.size() == L.width && !better(value, cost, top.back())) return;
  if (contains(beam[s].rows, i)) return;
  for (std::size_t d = 0; d < top.size(); ++d) {
    if (same_set(beam[top[d].parent], top[d].row, beam[s], i)) {
      if (!better(value, cost, top[d])) return;
      top.erase(top.begin() + std::ptrdiff_t(d));
      break;
    }
  }
  const Child c{value, cost, s, i};
  auto pos = std::find_if(top.begin(), top.end(),
                          [&](const Child& e) { return better(value, cost, e); });
  top.insert(pos, c);
  if (top.size() > L.width) top.pop_back();
}

// The hot loop: every (row, state) pair of one layer. The body is compiled twice on GCC/Clang
// x86-64 (AVX2+POPCNT, and baseline), picked at run time; both give identical results.
#if defined(__GNUC__)
#define MTGFAST_INLINE inline __attribute__((always_inline))
#else
#define MTGFAST_INLINE inline
#endif

template <bool Floor>
MTGFAST_INLINE void scan_layer_body(const LayerScan& L) {
  const Problem& p = *L.p;
  const auto& beam = *L.beam;
  const std::size_t m = p.size();
  const std::size_t lanes = L.lanes;
  const std::size_t ns = beam.size();
  const float* g32 = L.g32;
  const mask_t* masks = p.masks.data();
  const double K = L.K;
  const int max_cost = L.max_cost;
  std::vector<Child>& top = *L.top;
  Record* best = L.best->data();
  // Local copies of the states' hot fields, so the compiler need not reload them after calls.
  std::vector<const float*> thr(ns);
  std::vector<const float*> flo(ns);
  std::vector<mask_t> unc(ns);
  std::vector<double> val(ns);
  std::vector<int> cost0(ns);
  for (std::size_t s = 0; s < ns; ++s) {
    thr[s] = beam[s].thr.data();
    flo[s] = beam[s].flo.data();
    unc[s] = beam[s].uncovered;
    val[s] = beam[s].value;
    cost0[s] = beam[s].cost + 1;
  }
  // Entry threshold of the top list (a child must beat it): -inf while the list is not full.
  double top_v = kNegInf;
  int top_c = 1 << 30;
  auto refresh = [&] {
    if (top.size() < L.width) {
      top_v = kNegInf;
      top_c = 1 << 30;
    } else {
      top_v = top.back().value;
      top_c = top.back().cost;
    }
  };
  refresh();
  // Bound shared by all states: a child's gain over its parent is at most
  // A_i = sum_j max(0, g_ij - tb_j) with tb_j = min over states of cur_s[j] (covered or not), so a
  // state whose V_s + A_i cannot pass either threshold is skipped without its own pass. `slack`
  // covers float rounding, so skipping never changes a decision.
  std::vector<float> tb(lanes, 0.f);
  double scale = 1.0;
  for (std::size_t j = 0; j < std::size_t(p.n_tasks); ++j) {
    float lo = std::numeric_limits<float>::infinity();
    for (std::size_t s = 0; s < ns; ++s) {
      lo = std::min(lo, float(beam[s].cur[j]));
      scale += std::fabs(beam[s].cur[j]) / double(ns);
    }
    tb[j] = lo;
  }
  for (std::size_t s = 0; s < ns; ++s) scale = std::max(scale, 1.0 + std::fabs(val[s]));
  const double slack = 1e-5 * (scale + double(p.n_tasks) * (K + p.gain_abs_max + 1.0));
  // Past the deadline a layer's scan stops (its children so far stay); the first layer (one
  // parent, one pass over the rows) always completes, so every budget that one group and
  // singletons can serve gets an answer.
  const bool timed = L.layer > 1 && L.deadline->has();
  for (std::size_t i = 0; i < m; ++i) {
    if (timed && (i & 255) == 0 && L.deadline->passed()) {
      *L.expired = true;
      return;
    }
    const float* g = g32 + i * lanes;
    const mask_t mask = masks[i];
    float b8[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    for (std::size_t j = 0; j < lanes; j += 8) {
      for (std::size_t l = 0; l < 8; ++l) {
        const float d = g[j + l] - tb[j + l];
        b8[l] += d > 0.f ? d : 0.f;
      }
    }
    const double bound =
        double(((b8[0] + b8[1]) + (b8[2] + b8[3])) + ((b8[4] + b8[5]) + (b8[6] + b8[7]))) + slack;
    for (std::size_t s = 0; s < ns; ++s) {
      {
        const int cost_s = cost0[s] - popcount(mask & unc[s]);
        const double upper = val[s] + bound;
        const bool no_record = cost_s > max_cost || upper < best[cost_s].value;
        if (no_record && upper < top_v) continue;
      }
      const float* t = thr[s];
      const float* f = flo[s];
      // Eight partial sums in a fixed order: vectorises, and is the same on every machine. A
      // lane outside the row has g = -inf: it adds 0 in both kernels.
      float a[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
      for (std::size_t j = 0; j < lanes; j += 8) {
        for (std::size_t l = 0; l < 8; ++l) {
          const float d = g[j + l] - t[j + l];
          if (Floor)
            a[l] += d > f[j + l] ? d : 0.f;
          else
            a[l] += d > 0.f ? d : 0.f;
        }
      }
      const float sum = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
      const int newly = popcount(mask & unc[s]);
      const double approx = val[s] + (double(sum) - K * double(newly));
      const int cost = cost0[s] - newly;
      // Cheap rejection first (most children are neither kept nor a record), on the float sum
      // widened by its rounding slack; a child that may pass is ranked on its exact value, so
      // float rounding never reorders near-ties (the beam is the float64 ranking's).
      if (!(cost <= max_cost && approx + slack > best[cost].value) && !(approx + slack >= top_v))
        continue;
      const double value = child_value(p, beam[s], std::uint32_t(i));
      const bool is_best = cost <= max_cost && value > best[cost].value;
      const bool is_top = value > top_v || (value == top_v && cost < top_c);
      if (is_best || is_top) {
        consider(L, std::uint32_t(s), std::uint32_t(i), value, cost);
        refresh();
      }
    }
  }
}

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define MTGFAST_DISPATCH 1
__attribute__((target("avx2,popcnt"))) void scan_layer_avx2(const LayerScan& L) {
  if (L.floor) return scan_layer_body<true>(L);
  scan_layer_body<false>(L);
}
#endif

void scan_layer_generic(const LayerScan& L) {
  if (L.floor) return scan_layer_body<true>(L);
  scan_layer_body<false>(L);
}

void scan_layer(const LayerScan& L) {
#ifdef MTGFAST_DISPATCH
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
  if (avx2) return scan_layer_avx2(L);
#endif
  scan_layer_generic(L);
}

State root(const Problem& p, double K, bool floor, std::size_t lanes) {
  const int n = p.n_tasks;
  State st;
  st.cur.assign(std::size_t(n), 0.0);
  st.thr.assign(lanes, 0.f);
  st.flo.assign(lanes, 0.f);
  if (!p.alone()) {
    st.uncovered = full_mask(n);
    for (int j = 0; j < n; ++j) {
      st.cur[std::size_t(j)] = p.alone_value[std::size_t(j)];
      st.thr[std::size_t(j)] = float(p.alone_value[std::size_t(j)] - K);
      if (floor) st.flo[std::size_t(j)] = -std::numeric_limits<float>::infinity();
    }
  }
  double v = 0.0;
  for (double x : st.cur) v += x;
  st.value = v;
  st.cost = popcount(st.uncovered);
  return st;
}

State extend(const Problem& p, const State& parent, std::uint32_t row, double K) {
  State st = parent;
  st.rows.insert(std::upper_bound(st.rows.begin(), st.rows.end(), row), row);
  const double* g = p.row(row);
  for (mask_t b = p.masks[row]; b; b &= b - 1) {
    const std::size_t j = std::size_t(lowest_bit(b));
    st.cur[j] = joined_gain(parent, g, j);
    st.uncovered &= ~(mask_t{1} << j);
    st.thr[j] = float(st.cur[j]);
    st.flo[j] = 0.f;
  }
  (void)K;
  double v = 0.0;
  for (double x : st.cur) v += x;
  st.value = v;
  st.cost = int(st.rows.size()) + popcount(st.uncovered);
  return st;
}

}  // namespace

std::vector<GroupingResult> beam_search(const Problem& p, const std::vector<int>& budgets,
                                        int width, const Deadline& deadline, bool* timed_out) {
  if (width < 1) throw std::invalid_argument("beam width must be >= 1");
  if (p.size() >= (std::size_t{1} << 32)) throw std::length_error("too many candidates for beam");
  int max_budget = 0;
  for (int b : budgets) {
    if (b < 1) throw std::invalid_argument("budget must be >= 1, got " + std::to_string(b));
    max_budget = std::max(max_budget, b);
  }
  const int n = p.n_tasks;
  const int max_cost = std::min(max_budget, n);  // more than n groups never help
  // K makes g - (alone_value - K) >= 0 for every gain, so one max(0, .) kernel serves both cases.
  double lo = 0.0, hi = 0.0, abs_sum = 0.0;
  std::size_t count = 0;
  for (std::size_t i = 0; i < p.size(); ++i)
    for (mask_t b = p.masks[i]; b; b &= b - 1) {
      const double v = p.row(i)[lowest_bit(b)];
      lo = std::min(lo, v);
      abs_sum += std::fabs(v);
      ++count;
    }
  for (double a : p.alone_value) hi = std::max(hi, a);
  // The offset is relative to the data: the power of two at or above the spread (no constant
  // term, so a table in other units, times 2^k, is ranked alike; float(-K) and sums of K over
  // lanes are exact, so a zero-gain child scores exactly 0 and ties stay ties). Where one
  // extreme gain makes the spread dwarf the others (g + K would round them away in float), the
  // floor kernel instead: no offset, an uncovered lane adds g - alone_value with its sign.
  const double spread = hi - lo;
  const bool floor = !p.alone() && spread > 16.0 * abs_sum / double(std::max<std::size_t>(count, 1));
  int k_exp = 0;
  if (spread > 0.0) std::frexp(spread, &k_exp);
  const double K = p.alone() || floor || !(spread > 0.0) ? 0.0 : std::ldexp(1.0, k_exp);
  bool expired = false;

  // Float copy for the scan: it reads every row once per layer, so bytes are time. Rankings use
  // float sums; reported values are recomputed in double by finalize().
  const std::size_t lanes = (std::size_t(n) + 7) / 8 * 8;
  std::vector<float> g32(p.size() * lanes, -std::numeric_limits<float>::infinity());
  for (std::size_t i = 0; i < p.size(); ++i)
    for (mask_t b = p.masks[i]; b; b &= b - 1) {
      const std::size_t j = std::size_t(lowest_bit(b));
      g32[i * lanes + j] = float(p.row(i)[j]);
    }
  std::vector<std::vector<State>> layers;
  layers.push_back({root(p, K, floor, lanes)});
  std::vector<Record> best(std::size_t(max_cost) + 1);
  if (layers[0][0].cost <= max_cost)
    best[std::size_t(layers[0][0].cost)] = Record{layers[0][0].value, 0, 0, 0};
  for (int layer = 1; layer <= max_cost && !expired; ++layer) {
    const auto& beam = layers.back();
    if (beam.empty()) break;
    if (layer > 1 && deadline.passed()) {
      expired = true;
      break;
    }
    std::vector<Child> top;
    top.reserve(std::size_t(width) + 1);
    LayerScan L{&p,  g32.data(), lanes, &beam, std::size_t(width), K, floor, p.alone(), layer, max_cost,
                &top, &best, &deadline, &expired};
    scan_layer(L);
    std::vector<State> next;
    next.reserve(top.size());
    for (const Child& c : top) next.push_back(extend(p, beam[c.parent], c.row, K));
    layers.push_back(std::move(next));
  }

  std::vector<GroupingResult> out;
  out.reserve(budgets.size());
  for (int b : budgets) {
    const int cap = std::min(b, max_cost);
    int arg = -1;
    for (int c = 0; c <= cap; ++c)
      if (best[std::size_t(c)].layer >= 0 &&
          (arg < 0 || best[std::size_t(c)].value > best[std::size_t(arg)].value))
        arg = c;
    if (arg < 0) {
      out.push_back(infeasible(b, false));
      continue;
    }
    const Record& r = best[std::size_t(arg)];
    State st = r.layer == 0 ? layers[0][0]
                            : extend(p, layers[std::size_t(r.layer - 1)][r.parent], r.row, K);
    std::vector<std::size_t> rows(st.rows.begin(), st.rows.end());
    for (int j = 0; j < n; ++j)
      if (st.uncovered & (mask_t{1} << j)) rows.push_back(std::size_t(p.singleton_row[std::size_t(j)]));
    out.push_back(finalize(p, std::move(rows), b, false));
  }
  if (expired)
    for (auto& g : out) g.timed_out = true;
  if (timed_out) *timed_out = expired;
  return out;
}

}  // namespace mtgfast
