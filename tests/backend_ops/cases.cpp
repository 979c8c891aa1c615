// Inputs, references and the grid of every op case. Grids are small on
// purpose (the whole table runs in CI on 2 cores in seconds) but reach each
// kernel's branches: odd widths for vector tails, 1 token (GEMV / decode)
// and several (tiles; AMX from 5 bf16 tokens), GQA groups 1-8, block sizes
// 1/5/16, positions crossing blocks.
#include "cases.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace myriad::backend_ops {

namespace {

std::string join(const std::vector<int32_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ",";
    s += std::to_string(v[i]);
  }
  return s;
}

}  // namespace

// ---------------------------------------------------------------- embedding

std::string EmbeddingCase::row() const { return "embedding " + lower_name(dtype); }
std::string EmbeddingCase::shape() const {
  return "vocab=" + std::to_string(vocab) + " hidden=" + std::to_string(hidden) + " T=" + std::to_string(T);
}
void EmbeddingCase::make_inputs(std::mt19937_64& rng) {
  table = randn(rng, size_t(vocab * hidden), dtype);
  std::uniform_int_distribution<int32_t> id(0, int32_t(vocab - 1));
  ids.resize(size_t(T));
  for (auto& i : ids) i = id(rng);
  ids.back() = int32_t(vocab - 1);  // the last row of the table
  if (T > 2) ids[1] = ids[0];       // a repeated id
}
std::vector<Expected> EmbeddingCase::reference() const {
  return {{"rows", ref::embedding(table, hidden, ids), /*exact=*/true}};
}

// ---------------------------------------------------------------- rmsnorm

std::string RmsnormCase::row() const { return std::string(residual ? "rmsnorm+residual " : "rmsnorm ") + lower_name(dtype); }
std::string RmsnormCase::shape() const { return "T=" + std::to_string(T) + " n=" + std::to_string(n); }
void RmsnormCase::make_inputs(std::mt19937_64& rng) {
  x = randn(rng, size_t(T * n), dtype, 2.0f);
  w = randn(rng, size_t(n), DType::kF32, 0.2f);
  for (float& e : w) e += 1.0f;
  w = rounded(w, dtype);
  res = residual ? randn(rng, size_t(T * n), dtype) : std::vector<float>{};
}
std::vector<Expected> RmsnormCase::reference() const {
  std::vector<float> out, r = res;
  ref::rmsnorm(x, w, T, n, eps, residual ? &r : nullptr, dtype, out);
  std::vector<Expected> e{{"out", out}};
  if (residual) e.push_back({"residual", r});
  return e;
}

// ---------------------------------------------------------------- rope

std::string RopeCase::row() const { return std::string(llama3 ? "rope llama3 " : "rope ") + lower_name(dtype); }
std::string RopeCase::shape() const {
  return "T=" + std::to_string(T) + " heads=" + std::to_string(heads) + "/" + std::to_string(kv_heads) +
         " head_dim=" + std::to_string(head_dim) + " max_pos=" + std::to_string(max_pos);
}
ModelConfig RopeCase::config() const {
  ModelConfig c;
  c.head_dim = head_dim;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.rope_theta = llama3 ? 500000.0f : 10000.0f;
  if (llama3) c.rope_scaling = RopeScaling{"llama3", 8.0f, 1.0f, 4.0f, 8192};  // Llama 3.1's
  return c;
}
void RopeCase::make_inputs(std::mt19937_64& rng) {
  q = uniform(rng, size_t(T * heads * head_dim), dtype, 1.0f);
  k = uniform(rng, size_t(T * kv_heads * head_dim), dtype, 1.0f);
  std::uniform_int_distribution<int32_t> p(0, max_pos);
  pos.resize(size_t(T));
  for (auto& e : pos) e = p(rng);
  pos.front() = 0;
  pos.back() = max_pos;
}
std::vector<Expected> RopeCase::reference() const {
  const auto inv = ref::rope_inv_freq(config());
  std::vector<float> rq = q, rk = k;
  for (int64_t t = 0; t < T; ++t) {
    ref::rope(rq.data() + t * heads * head_dim, heads, head_dim, pos[size_t(t)], inv);
    ref::rope(rk.data() + t * kv_heads * head_dim, kv_heads, head_dim, pos[size_t(t)], inv);
  }
  return {{"q", rq}, {"k", rk}};
}
Tol RopeCase::tol(size_t, DType stored) const {
  // The angle pos * inv_freq is a float32 product (transformers computes it
  // so), and a backend's float32 inv_freq may differ from the reference's by
  // an ulp: the angle can differ by ~2^-23 * pos radians, moving an element
  // of |x| <= 1 (uniform inputs, pairs of norm <= sqrt 2) by up to that.
  Tol t = default_tol(stored);
  t.atol += 2.0 * std::ldexp(double(max_pos), -23);
  return t;
}

// ---------------------------------------------------------------- silu_mul

std::string SiluMulCase::row() const { return "silu_mul " + lower_name(dtype); }
std::string SiluMulCase::shape() const { return "T=" + std::to_string(T) + " inter=" + std::to_string(inter); }
void SiluMulCase::make_inputs(std::mt19937_64& rng) {
  gate_up = randn(rng, size_t(T * 2 * inter), dtype, 3.0f);
  // Gates far into exp's tails (silu -> 0 and silu -> g).
  gate_up[0] = round_to_dtype(dtype, -40.0f);
  if (inter > 1) gate_up[1] = round_to_dtype(dtype, 40.0f);
}
std::vector<Expected> SiluMulCase::reference() const { return {{"out", ref::silu_mul(gate_up, T, inter)}}; }

// ---------------------------------------------------------------- add_bias

std::string AddBiasCase::row() const { return "add_bias " + lower_name(dtype); }
std::string AddBiasCase::shape() const { return "T=" + std::to_string(T) + " n=" + std::to_string(n); }
void AddBiasCase::make_inputs(std::mt19937_64& rng) {
  y = randn(rng, size_t(T * n), dtype);
  bias = randn(rng, size_t(n), dtype);
}
std::vector<Expected> AddBiasCase::reference() const {
  std::vector<float> r = y;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < n; ++i) r[size_t(t * n + i)] = float(double(r[size_t(t * n + i)]) + bias[size_t(i)]);
  return {{"y", r}};
}

// ---------------------------------------------------------------- gemm

std::string GemmCase::row() const { return "gemm " + lower_name(dtype); }
std::string GemmCase::shape() const {
  return "T=" + std::to_string(T) + " in=" + std::to_string(in) + " out=" + std::to_string(out);
}
void GemmCase::make_inputs(std::mt19937_64& rng) {
  // W ~ N(0, 1/in): outputs O(1), so the absolute tolerances mean the same at every width.
  x = randn(rng, size_t(T * in), dtype == DType::kF16 ? DType::kF32 : dtype);
  w = randn(rng, size_t(out * in), dtype, 1.0f / std::sqrt(float(in)));
}
std::vector<Expected> GemmCase::reference() const { return {{"y", ref::gemm(x, w, T, in, out)}}; }

// ---------------------------------------------------------------- attention

std::string AttentionCase::row() const {
  return std::string(window > 0 ? "paged_attention window " : "paged_attention ") + lower_name(dtype);
}
std::string AttentionCase::shape() const {
  std::string s = "heads=" + std::to_string(heads) + "/" + std::to_string(kv_heads) + " head_dim=" +
                  std::to_string(head_dim) + " block=" + std::to_string(block_size);
  if (window > 0) s += " window=" + std::to_string(window);
  s += " seqs(start+n)=";
  for (const Seq& q_ : seqs) s += std::to_string(q_.start) + "+" + std::to_string(q_.n) + " ";
  return s;
}
int64_t AttentionCase::tokens() const {
  int64_t t = 0;
  for (const Seq& s : seqs) t += s.n;
  return t;
}
void AttentionCase::make_inputs(std::mt19937_64& rng) {
  int32_t needed = 0;
  for (const Seq& s : seqs) needed += int32_t((s.start + s.n + block_size - 1) / block_size);
  pool_blocks = needed + 3;  // spare blocks no table uses (NaN throughout)
  std::vector<int32_t> perm(static_cast<size_t>(pool_blocks));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  size_t used = 0;
  tables.clear();
  k.clear();
  v.clear();
  for (const Seq& s : seqs) {
    const int64_t len = s.start + s.n;
    std::vector<int32_t> t;
    for (int64_t b = 0; b < (len + block_size - 1) / block_size; ++b) t.push_back(perm[used++]);
    tables.push_back(std::move(t));
    k.push_back(randn(rng, size_t(len * kv_dim()), dtype));
    v.push_back(randn(rng, size_t(len * kv_dim()), dtype));
  }
  q = randn(rng, size_t(tokens() * heads * head_dim), dtype);
}
std::vector<Expected> AttentionCase::reference() const {
  const int64_t q_dim = heads * head_dim;
  std::vector<float> out(size_t(tokens() * q_dim)), kc, vc;
  int64_t t = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    for (int64_t j = 0; j < seqs[i].n; ++j, ++t) {
      const int64_t pos = seqs[i].start + j;
      const int64_t lo = window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0;  // (pos - W, pos]
      ref::attention(q.data() + t * q_dim, k[i].data() + lo * kv_dim(), v[i].data() + lo * kv_dim(), pos + 1 - lo,
                     heads, kv_heads, head_dim, out.data() + t * q_dim);
    }
    kc.insert(kc.end(), k[i].begin(), k[i].end());
    vc.insert(vc.end(), v[i].begin(), v[i].end());
  }
  return {{"out", out}, {"cache K", kc, true}, {"cache V", vc, true}};
}

// ---------------------------------------------------------------- LoRA

std::string LoraCase::row() const {
  return std::string(mixtures ? "lora mixtures " : "lora one-per-row ") + lower_name(dtype);
}
std::string LoraCase::shape() const {
  return "T=" + std::to_string(T) + " in=" + std::to_string(in) + " out=" + std::to_string(out) + " ranks=" +
         join(ranks);
}
int32_t LoraCase::max_rank() const { return *std::max_element(ranks.begin(), ranks.end()); }
void LoraCase::make_inputs(std::mt19937_64& rng) {
  // A ~ N(0, 1/in), B ~ N(0, 1/rank), scale 0.5-2: each delta is O(1), as
  // large as y, so a dropped or misrouted delta cannot hide in the tolerance.
  std::uniform_real_distribution<float> scale(0.5f, 2.0f), weight(0.1f, 1.0f);
  slots.clear();
  for (int32_t r : ranks) {
    ref::LoraSlot s;
    s.rank = r;
    s.scale = scale(rng);
    s.a = randn(rng, size_t(int64_t(r) * in), dtype, 1.0f / std::sqrt(float(in)));
    s.b = randn(rng, size_t(out * r), dtype, r > 0 ? 1.0f / std::sqrt(float(r)) : 1.0f);
    slots.push_back(std::move(s));
  }
  x = randn(rng, size_t(T * in), dtype);
  y = randn(rng, size_t(T * out), dtype);
  const int nslots = int(ranks.size());
  std::uniform_int_distribution<int> pick(0, nslots - 1), kind(0, 9);
  mixes.assign(size_t(T), AdapterMix{});
  for (int64_t t = 0; t < T; ++t) {
    AdapterMix& m = mixes[size_t(t)];
    // Fixed first rows so every case has each kind: row 0 none (a single-row
    // case: a mixture or one slot), row 1 one slot, row 2 a mixture; then random.
    int k_ = kind(rng);
    if (t == 0) k_ = T > 1 ? 0 : mixtures ? 2 : 5;
    if (t == 1) k_ = 5;
    if (t == 2 && mixtures) k_ = 2;
    if (k_ < 2) continue;  // ~20% rows: no adapter
    const int n = mixtures && k_ < 4 ? std::min(nslots, k_ == 2 ? 3 : 2) : 1;
    while (m.count < n) {
      const int s = pick(rng);
      bool dup = false;
      for (uint8_t i = 0; i < m.count; ++i) dup = dup || m.refs[i].slot == s;
      if (!dup) m.refs[m.count++] = {s, n == 1 ? 1.0f : weight(rng)};
    }
  }
}
std::vector<size_t> LoraCase::untouched_rows() const {
  std::vector<size_t> r;
  for (size_t t = 0; t < mixes.size(); ++t) {
    bool touched = false;
    for (uint8_t i = 0; i < mixes[t].count; ++i) touched = touched || ranks[size_t(mixes[t].refs[i].slot)] > 0;
    if (!touched) r.push_back(t);
  }
  return r;
}
std::vector<Expected> LoraCase::reference() const {
  std::vector<float> r = y;
  ref::lora(mixes, slots, x, in, r, out);
  std::vector<float> same;
  for (size_t t : untouched_rows()) same.insert(same.end(), y.begin() + long(t * out), y.begin() + long((t + 1) * out));
  return {{"y", r}, {"rows without adapter", same, true}};
}
Tol LoraCase::tol(size_t i, DType stored) const {
  // y + delta is a sum of O(1) terms with one more level of f32 dots (shrink
  // then expand) than a gemm: 2e-4 in f32 (as the CUDA LoRA tests); bf16 as default.
  if (stored == DType::kF32) return {2e-4, 2e-4};
  return OpCase::tol(i, stored);
}

// ---------------------------------------------------------------- greedy

std::string GreedyCase::row() const { return argmax_only ? "argmax f32" : "sample greedy+logprob f32"; }
std::string GreedyCase::shape() const { return "rows=" + std::to_string(rows) + " vocab=" + std::to_string(vocab); }
void GreedyCase::make_inputs(std::mt19937_64& rng) {
  logits = randn(rng, size_t(rows * vocab), DType::kF32, 3.0f);
  std::uniform_int_distribution<int64_t> id(0, vocab - 1);
  for (int64_t r = 1; r < rows; r += 2) {  // odd rows: the maximum at two ids
    float* z = logits.data() + r * vocab;
    int64_t a = id(rng), b = id(rng);
    if (a == b) b = (a + 1) % vocab;
    const float top = *std::max_element(z, z + vocab) + 1.0f;
    z[a] = z[b] = top;
  }
  if (rows > 2) std::fill_n(logits.data() + 2 * vocab, vocab, -1.5f);  // all equal: id 0, logprob -log V
}
std::vector<Expected> GreedyCase::reference() const {
  std::vector<float> tok, lp;
  for (int64_t r = 0; r < rows; ++r) {
    const ref::Greedy g = ref::greedy(logits.data() + r * vocab, vocab);
    tok.push_back(float(g.token));
    lp.push_back(float(g.logprob));
  }
  std::vector<Expected> e{{"token", tok, true}};
  if (!argmax_only) e.push_back({"logprob", lp});
  return e;
}

// ---------------------------------------------------------------- the grid

Cases all_cases() {
  Cases c;
  const DType f32 = DType::kF32, bf16 = DType::kBF16, f16 = DType::kF16;
  for (DType d : {f32, bf16, f16}) {
    c.push_back(std::make_unique<EmbeddingCase>(d, 50, 64, 5));
    c.push_back(std::make_unique<EmbeddingCase>(d, 7, 37, 3));
  }
  for (DType d : {f32, bf16})
    for (bool r : {false, true})
      for (auto [T, n] : {std::pair<int64_t, int64_t>{1, 64}, {3, 100}, {4, 1024}})
        c.push_back(std::make_unique<RmsnormCase>(d, T, n, r));
  for (DType d : {f32, bf16}) {
    c.push_back(std::make_unique<RopeCase>(d, 4, 4, 2, 16, false, 200));
    c.push_back(std::make_unique<RopeCase>(d, 3, 8, 8, 64, false, 2047));
    c.push_back(std::make_unique<RopeCase>(d, 5, 4, 1, 128, true, 9000));  // all three llama3 bands
    c.push_back(std::make_unique<RopeCase>(d, 2, 2, 2, 64, true, 33));
  }
  for (DType d : {f32, bf16}) {
    c.push_back(std::make_unique<SiluMulCase>(d, 1, 7));
    c.push_back(std::make_unique<SiluMulCase>(d, 3, 300));
  }
  for (DType d : {f32, bf16}) {
    c.push_back(std::make_unique<AddBiasCase>(d, 1, 5));
    c.push_back(std::make_unique<AddBiasCase>(d, 4, 96));
  }
  for (DType d : {f32, bf16, f16})
    for (int64_t T : {1, 3, 9})  // GEMV; 4x4 / 4x2 tiles with a tail; AMX (bf16, >= 5 tokens)
      for (auto [in, out] : {std::pair<int64_t, int64_t>{64, 48}, {130, 37}})
        c.push_back(std::make_unique<GemmCase>(d, T, in, out));
  using Seq = AttentionCase::Seq;
  const std::vector<Seq> mixed = {{0, 6}, {5, 3}, {13, 1}, {40, 1}};  // prefill, chunk, two decodes
  for (DType d : {f32, bf16, f16}) {
    c.push_back(std::make_unique<AttentionCase>(d, 4, 2, 16, 16, 0, mixed));   // the fixtures' shape
    c.push_back(std::make_unique<AttentionCase>(d, 8, 1, 64, 5, 0, mixed));    // group 8, blocks of 5
    c.push_back(std::make_unique<AttentionCase>(d, 4, 4, 32, 1, 0, std::vector<Seq>{{0, 3}, {2, 1}}));  // no GQA, blocks of 1
    c.push_back(std::make_unique<AttentionCase>(d, 4, 2, 16, 4, 4, mixed));    // sliding window
  }
  for (DType d : {f32, bf16})
    for (bool mix : {true, false}) {
      c.push_back(std::make_unique<LoraCase>(d, 9, 64, 48, std::vector<int32_t>{8, 0, 16, 4}, mix));
      c.push_back(std::make_unique<LoraCase>(d, 1, 130, 37, std::vector<int32_t>{2, 16}, mix));
    }
  for (bool a : {false, true}) {
    c.push_back(std::make_unique<GreedyCase>(4, 7, a));
    c.push_back(std::make_unique<GreedyCase>(3, 32000, a));
  }
  return c;
}

}  // namespace myriad::backend_ops
