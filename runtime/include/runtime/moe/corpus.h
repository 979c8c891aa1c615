// Corpora for the mixture of adapter experts (issue 22): a synthetic
// multi-domain corpus the repository generates (domains that share most of
// their vocabulary but differ in formats and recurring phrases; the labels
// are kept only for checking), and the cheap lexical embedding: TF-IDF over
// hashed 1- to 3-grams of token ids (so a byte-level tokenizer still sees
// words), L2-normalised. Pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace myriad::moe {

struct CorpusLine {
  std::string text;
  int32_t domain = 0;  // the hidden label, for checks only
};

inline constexpr int32_t kSyntheticDomains = 4;  // support chat, legal clauses, KYC checks, project updates
const char* synthetic_domain_name(int32_t domain);

// `per_domain` lines of each domain, interleaved in a seeded order.
std::vector<CorpusLine> synthetic_corpus(int32_t per_domain, uint64_t seed);

// [docs.size(), dim]: TfidfModel::fit(docs, dim) (router.h) embedding each
// document: TF-IDF of hashed n-grams (n = 1..3) of its token ids, each row
// L2-normalised (a row of zeros for an empty document).
std::vector<float> tfidf_embed(const std::vector<std::vector<int32_t>>& docs, int64_t dim);

}  // namespace myriad::moe
