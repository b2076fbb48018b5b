// A wall-clock deadline shared by the searches (steady clock; none when the limit is <= 0 or inf).
#pragma once
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

namespace mtgfast {

class Deadline {
 public:
  using Clock = std::chrono::steady_clock;
  Deadline() = default;
  explicit Deadline(double seconds) : start_(Clock::now()) {
    if (seconds > 0.0 && std::isfinite(seconds)) {
      has_ = true;
      at_ = start_ + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(std::min(seconds, 1e9)));
    }
  }
  bool has() const noexcept { return has_; }
  bool passed() const noexcept { return has_ && Clock::now() > at_; }
  // Seconds left (inf without a deadline, 0 once passed).
  double left() const noexcept {
    if (!has_) return std::numeric_limits<double>::infinity();
    const double s = std::chrono::duration<double>(at_ - Clock::now()).count();
    return s > 0.0 ? s : 0.0;
  }
  // A deadline `seconds` from now, but never later than this one.
  Deadline sub(double seconds) const {
    Deadline d(seconds);
    if (has_ && (!d.has_ || d.at_ > at_)) {
      d.has_ = true;
      d.at_ = at_;
    }
    return d;
  }

 private:
  Clock::time_point start_ = Clock::now();
  Clock::time_point at_{};
  bool has_ = false;
};

}  // namespace mtgfast
