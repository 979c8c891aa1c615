// A job's loss curve as the files a user opens: CSV (one row per optimizer
// step) and a self-contained SVG line chart (no script, no external
// resources). Pure functions of the history.
#pragma once

#include <string>
#include <vector>

#include "runtime/training/training_job.h"

namespace myriad {

// "step,loss,lr,grad_norm,tokens,target_tokens\n" then one line per record.
// With eval points (step, loss), a last column eval_loss, empty on the
// steps without one.
std::string loss_curve_csv(const std::vector<TrainingStepRecord>& history,
                           const std::vector<std::pair<int64_t, double>>& eval_points = {});
// The loss against the step (and, when eval points are given, those as dots),
// with axes, ticks and `title`; an empty history draws the axes only.
std::string loss_curve_svg(const std::vector<TrainingStepRecord>& history, const std::string& title,
                           const std::vector<std::pair<int64_t, double>>& eval_points = {});

}  // namespace myriad
