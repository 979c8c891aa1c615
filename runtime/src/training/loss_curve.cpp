#include "runtime/training/loss_curve.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

namespace myriad {

namespace {

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string escape_xml(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace

std::string loss_curve_csv(const std::vector<TrainingStepRecord>& history,
                           const std::vector<std::pair<int64_t, double>>& eval_points) {
  const bool eval = !eval_points.empty();
  std::map<int64_t, double> eval_at(eval_points.begin(), eval_points.end());
  std::string out = eval ? "step,loss,lr,grad_norm,tokens,target_tokens,eval_loss\n"
                         : "step,loss,lr,grad_norm,tokens,target_tokens\n";
  char buf[192];
  for (const auto& r : history) {
    std::snprintf(buf, sizeof buf, "%lld,%.6g,%.6g,%.6g,%lld,%lld", (long long)r.step, r.loss, r.lr, r.grad_norm,
                  (long long)r.tokens, (long long)r.target_tokens);
    out += buf;
    if (eval) {
      out += ',';
      if (auto it = eval_at.find(r.step); it != eval_at.end()) {
        std::snprintf(buf, sizeof buf, "%.6g", it->second);
        out += buf;
      }
    }
    out += '\n';
  }
  return out;
}

std::string loss_curve_svg(const std::vector<TrainingStepRecord>& history, const std::string& title,
                           const std::vector<std::pair<int64_t, double>>& eval_points) {
  constexpr double W = 640, H = 360, L = 60, R = 20, T = 36, B = 44;  // size and margins
  double max_step = 1, lo = 0, hi = 1;
  bool any = false;
  auto see = [&](int64_t step, double loss) {
    if (!std::isfinite(loss)) return;
    max_step = std::max(max_step, double(step));
    lo = any ? std::min(lo, loss) : loss;
    hi = any ? std::max(hi, loss) : loss;
    any = true;
  };
  for (const auto& r : history) see(r.step, r.loss);
  for (const auto& [s, l] : eval_points) see(s, l);
  if (!any || hi - lo < 1e-9) {
    lo = any ? lo - 0.5 : 0;
    hi = any ? hi + 0.5 : 1;
  }
  lo = std::max(0.0, lo - 0.05 * (hi - lo));
  auto x = [&](double step) { return L + (W - L - R) * step / max_step; };
  auto y = [&](double loss) { return H - B - (H - T - B) * (loss - lo) / (hi - lo); };
  std::string s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"360\" viewBox=\"0 0 640 360\" "
                  "font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"640\" height=\"360\" fill=\"white\"/>\n";
  s += "<text x=\"320\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">" + escape_xml(title) + "</text>\n";
  s += "<line x1=\"" + fmt("%.1f", L) + "\" y1=\"" + fmt("%.1f", H - B) + "\" x2=\"" + fmt("%.1f", W - R) + "\" y2=\"" +
       fmt("%.1f", H - B) + "\" stroke=\"black\"/>\n";
  s += "<line x1=\"" + fmt("%.1f", L) + "\" y1=\"" + fmt("%.1f", T) + "\" x2=\"" + fmt("%.1f", L) + "\" y2=\"" +
       fmt("%.1f", H - B) + "\" stroke=\"black\"/>\n";
  for (int i = 0; i <= 4; ++i) {  // ticks
    const double v = lo + (hi - lo) * i / 4, st = max_step * i / 4;
    s += "<text x=\"" + fmt("%.1f", L - 6) + "\" y=\"" + fmt("%.1f", y(v) + 4) + "\" text-anchor=\"end\">" +
         fmt("%.3g", v) + "</text>\n";
    s += "<text x=\"" + fmt("%.1f", x(st)) + "\" y=\"" + fmt("%.1f", H - B + 16) + "\" text-anchor=\"middle\">" +
         fmt("%.0f", st) + "</text>\n";
  }
  s += "<text x=\"320\" y=\"" + fmt("%.1f", H - 8) + "\" text-anchor=\"middle\">step</text>\n";
  s += "<text x=\"14\" y=\"180\" transform=\"rotate(-90 14 180)\" text-anchor=\"middle\">loss</text>\n";
  if (!history.empty()) {
    s += "<polyline fill=\"none\" stroke=\"#1f6feb\" stroke-width=\"1.5\" points=\"";
    for (const auto& r : history)
      if (std::isfinite(r.loss)) s += fmt("%.1f", x(double(r.step))) + "," + fmt("%.1f", y(r.loss)) + " ";
    s += "\"/>\n";
  }
  for (const auto& [st, l] : eval_points)
    if (std::isfinite(l))
      s += "<circle cx=\"" + fmt("%.1f", x(double(st))) + "\" cy=\"" + fmt("%.1f", y(l)) +
           "\" r=\"3.5\" fill=\"#d1242f\"><title>eval " + fmt("%.4g", l) + "</title></circle>\n";
  s += "</svg>\n";
  return s;
}

}  // namespace myriad
