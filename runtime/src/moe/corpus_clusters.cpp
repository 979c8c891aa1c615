#include "runtime/moe/corpus_clusters.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <numeric>

#include <nlohmann/json.hpp>

#include "runtime/moe/clustering.h"

namespace myriad::moe {

namespace {

// Lower-cased words of a text (letters and digits).
std::vector<std::string> words_of(const std::string& text) {
  std::vector<std::string> out;
  std::string w;
  for (char ch : text + " ") {
    if (std::isalnum(static_cast<unsigned char>(ch))) {
      w += char(std::tolower(static_cast<unsigned char>(ch)));
    } else if (!w.empty()) {
      out.push_back(std::move(w));
      w.clear();
    }
  }
  return out;
}

}  // namespace

Result<std::vector<std::string>> parse_corpus_jsonl(std::string_view jsonl, const std::string& source) {
  std::vector<std::string> out;
  int64_t line_no = 0;
  size_t pos = 0;
  while (pos < jsonl.size()) {
    const size_t end = std::min(jsonl.find('\n', pos), jsonl.size());
    const std::string_view line = jsonl.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("text") || !j["text"].is_string() || j["text"].get<std::string>().empty())
      return make_error(ErrorCode::kBadFile,
                        source + ":" + std::to_string(line_no) + ": needs a non-empty \"text\" string");
    out.push_back(j["text"].get<std::string>());
  }
  if (out.empty()) return make_error(ErrorCode::kBadFile, source + ": no lines");
  return out;
}

std::vector<std::vector<std::string>> frequent_terms(const std::vector<std::string>& texts,
                                                     const std::vector<int32_t>& assignment, int64_t k, size_t count) {
  std::map<std::string, std::vector<int64_t>> lines_with;  // word -> lines containing it, per cluster
  std::vector<int64_t> size(size_t(k), 0);
  for (size_t i = 0; i < texts.size(); ++i) {
    const int32_t c = assignment[i];
    ++size[size_t(c)];
    std::vector<std::string> ws = words_of(texts[i]);
    std::sort(ws.begin(), ws.end());
    ws.erase(std::unique(ws.begin(), ws.end()), ws.end());
    for (const auto& w : ws) {
      auto& v = lines_with[w];
      if (v.empty()) v.assign(size_t(k), 0);
      ++v[size_t(c)];
    }
  }
  const int64_t total = int64_t(texts.size());
  std::vector<std::vector<std::string>> out(static_cast<size_t>(k));
  for (int64_t c = 0; c < k; ++c) {
    std::vector<std::pair<double, std::string>> scored;
    for (const auto& [w, v] : lines_with) {
      const double here = double(v[size_t(c)]) / double(std::max<int64_t>(size[size_t(c)], 1));
      const int64_t rest = total - size[size_t(c)];
      const double elsewhere =
          rest > 0 ? double(std::accumulate(v.begin(), v.end(), int64_t(0)) - v[size_t(c)]) / double(rest) : 0.0;
      if (here >= 0.2) scored.push_back({here - elsewhere, w});
    }
    std::sort(scored.begin(), scored.end(),
              [](const auto& a, const auto& b) { return a.first != b.first ? a.first > b.first : a.second < b.second; });
    for (size_t i = 0; i < scored.size() && i < count; ++i) out[size_t(c)].push_back(scored[i].second);
  }
  return out;
}

void describe_clusters(Mixture& mixture, const std::vector<std::string>& texts, const std::vector<int32_t>& assignment,
                       int64_t k) {
  const auto terms = frequent_terms(texts, assignment, k, 8);
  mixture.experts.assign(size_t(k), MixtureExpert{});
  for (int64_t c = 0; c < k; ++c) {
    MixtureExpert& e = mixture.experts[size_t(c)];
    e.name = "expert-" + std::to_string(c);
    e.terms = terms[size_t(c)];
  }
  for (size_t i = 0; i < texts.size(); ++i) {
    MixtureExpert& e = mixture.experts[size_t(assignment[i])];
    ++e.lines;
    if (e.samples.size() < 3) e.samples.push_back(texts[i]);
  }
}

Result<ClusteredCorpus> cluster_corpus_tfidf(const std::vector<std::string>& texts, const Tokenizer& tokenizer,
                                             int64_t k, uint64_t seed, int64_t tfidf_dim) {
  const int64_t n = int64_t(texts.size());
  if (k < 1 || k > n)
    return make_error(ErrorCode::kInvalidArgument,
                      "k must be in [1, " + std::to_string(n) + "] (the corpus's lines), not " + std::to_string(k));
  std::vector<std::vector<int32_t>> docs;
  docs.reserve(texts.size());
  for (const auto& t : texts) docs.push_back(tokenizer.encode(t, /*add_special_tokens=*/false));
  ClusteredCorpus out;
  Mixture& m = out.mixture;
  m.embedding_kind = EmbeddingKind::kTfidf;
  m.embedding = TfidfModel::fit(docs, tfidf_dim);
  std::vector<float> points;
  points.reserve(docs.size() * size_t(tfidf_dim));
  for (const auto& d : docs) {
    const std::vector<float> row = m.embedding.embed(d);
    points.insert(points.end(), row.begin(), row.end());
  }
  KMeansOptions ko;
  ko.k = int32_t(k);
  ko.seed = seed;
  auto clusters = kmeans(points, n, tfidf_dim, ko);
  if (!clusters.ok()) return clusters.error();
  m.cosine = true;
  m.centroids = std::move(clusters->centroids);
  m.silhouette = mean_silhouette(points, n, tfidf_dim, clusters->assignment, true);
  out.assignment = std::move(clusters->assignment);
  describe_clusters(m, texts, out.assignment, k);
  return out;
}

}  // namespace myriad::moe
