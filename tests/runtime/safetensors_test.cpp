// SafetensorsFile: round trips and one test per hostile-file case, each
// checking that the error names the file and what is wrong.
#include "runtime/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <filesystem>
#include <fstream>
#include <random>

namespace myriad {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() / ("myriad_st_test_" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string sub(const std::string& s) const { return (path_ / s).string(); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// A file image: 8-byte length (header.size() unless overridden), header, data.
std::string image(const std::string& header, size_t data_bytes, std::optional<uint64_t> len = std::nullopt) {
  std::string out(8, '\0');
  const uint64_t n = len.value_or(header.size());
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char(uint8_t(n >> (8 * i)));
  out += header;
  for (size_t i = 0; i < data_bytes; ++i) out.push_back(char(i * 7));
  return out;
}

std::vector<std::byte> as_bytes(const std::string& s) {
  std::vector<std::byte> v(s.size());
  std::memcpy(v.data(), s.data(), s.size());
  return v;
}

// Writes the image to a file and opens it (the mmap path); also parses it
// from memory and checks both give the same verdict.
Result<std::shared_ptr<SafetensorsFile>> open_image(const TempDir& dir, const std::string& img) {
  const std::string path = dir.sub("bad.safetensors");
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << img;
  }
  auto mem = SafetensorsFile::from_bytes(as_bytes(img), path);
  auto f = SafetensorsFile::open(path);
  EXPECT_EQ(mem.ok(), f.ok());
  if (!mem.ok() && !f.ok()) {
    EXPECT_EQ(mem.error().message, f.error().message);
  }
  return f;
}

// Asserts failure with `code` and a message naming the file and each needle.
void expect_error(const Result<std::shared_ptr<SafetensorsFile>>& r, ErrorCode code,
                  std::initializer_list<const char*> needles) {
  ASSERT_FALSE(r.ok()) << "expected an error mentioning " << *needles.begin();
  EXPECT_EQ(r.error().code, code) << r.error().to_string();
  EXPECT_NE(r.error().message.find("bad.safetensors"), std::string::npos) << r.error().message;
  for (const char* n : needles) EXPECT_NE(r.error().message.find(n), std::string::npos) << r.error().message;
}

const char* kGood = R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
                    R"("b":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]}})";

TEST(Safetensors, ParsesAHandWrittenFile) {
  TempDir dir;
  auto f = open_image(dir, image(kGood, 32));
  ASSERT_TRUE(f.ok()) << f.error().to_string();
  ASSERT_EQ((*f)->tensors().size(), 2u);
  const TensorView* a = (*f)->find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, DType::kF32);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a->nbytes, 24u);
  EXPECT_EQ(a->numel(), 6);
  const TensorView* b = (*f)->find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->data, a->data + 24);
  EXPECT_EQ((*f)->metadata().at("format"), "pt");
  EXPECT_EQ((*f)->find("c"), nullptr);
}

TEST(Safetensors, WriteThenReadRoundTripsAllDtypes) {
  TempDir dir;
  std::vector<float> f32 = {1.5f, -2.25f, 3.0f, 0.0f, 0.125f, -7.0f};
  std::vector<uint16_t> bf16, f16;
  for (float x : f32) {
    bf16.push_back(f32_to_bf16(x));
    f16.push_back(f32_to_f16(x));
  }
  std::vector<TensorToWrite> ts = {
      {"x.f32", DType::kF32, {2, 3}, std::as_bytes(std::span(f32))},
      {"x.bf16", DType::kBF16, {6}, std::as_bytes(std::span(bf16))},
      {"x.f16", DType::kF16, {3, 2}, std::as_bytes(std::span(f16))},
      {"empty", DType::kF32, {0, 4}, {}},
  };
  const std::string path = dir.sub("rt.safetensors");
  auto st = write_safetensors(path, ts, {{"format", "pt"}, {"note", "hi"}});
  ASSERT_TRUE(st.ok()) << st.error().to_string();
  // Nothing but the file itself is left in the folder (the temp was renamed).
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 1);
  auto f = SafetensorsFile::open(path);
  ASSERT_TRUE(f.ok()) << f.error().to_string();
  EXPECT_EQ((*f)->metadata().at("note"), "hi");
  for (const char* n : {"x.f32", "x.bf16", "x.f16"}) {
    const TensorView* t = (*f)->find(n);
    ASSERT_NE(t, nullptr);
    for (size_t i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(t->at(i), f32[i]) << n << " " << i;
    // The data buffer starts 8-byte aligned, so element-aligned views.
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t->data) % dtype_size(t->dtype), 0u);
  }
  EXPECT_EQ((*f)->find("empty")->numel(), 0);
  std::ifstream in(path, std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
}

// first_non_finite tests bits: every NaN/infinity pattern of each dtype is
// found at its index (in a block past the first, at an unaligned address),
// and the largest finite values, denormals and negative zero are not.
TEST(Safetensors, FirstNonFiniteFindsEveryNanAndInfinityPattern) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> finite = {0.0f, -0.0f, 1.0f, -2.5f, 1e-39f /* an f32 denormal */, 3.0f};
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
    const size_t es = dtype_size(dt);
    auto encode = [&](float x, std::byte* p) {
      if (dt == DType::kF32) {
        std::memcpy(p, &x, 4);
      } else {
        const uint16_t h = dt == DType::kBF16 ? f32_to_bf16(x) : f32_to_f16(x);
        std::memcpy(p, &h, 2);
      }
    };
    const size_t n = 3000;  // three scan blocks
    std::vector<std::byte> buf(1 + n * es);  // +1: the view starts unaligned
    for (size_t i = 0; i < n; ++i) encode(finite[i % finite.size()], buf.data() + 1 + i * es);
    // The dtype's largest finite value (by its bits), twice, with either sign.
    const uint32_t max_bits = dt == DType::kF32 ? 0x7f7fffffu : dt == DType::kBF16 ? 0x7f7fu : 0x7bffu;
    const uint32_t sign_bit = dt == DType::kF32 ? 0x80000000u : 0x8000u;
    const uint32_t neg_max_bits = max_bits | sign_bit;
    std::memcpy(buf.data() + 1 + 5 * es, &max_bits, es);  // little-endian: the low bytes
    std::memcpy(buf.data() + 1 + 11 * es, &neg_max_bits, es);
    TensorView t{"w", dt, {int64_t(n)}, buf.data() + 1, n * es};
    EXPECT_EQ(first_non_finite(t), -1) << dtype_name(dt);
    for (float bad : {inf, -inf, nan, -nan}) {
      std::vector<std::byte> copy = buf;
      TensorView u = t;
      u.data = copy.data() + 1;
      encode(bad, copy.data() + 1 + 2100 * es);
      encode(bad, copy.data() + 1 + 2900 * es);
      EXPECT_EQ(first_non_finite(u), 2100) << dtype_name(dt) << " " << bad;
    }
  }
  // A NaN with another payload than the quiet one (signalling, f32 bits).
  const uint32_t snan = 0x7f800001u;
  TensorView s{"s", DType::kF32, {1}, reinterpret_cast<const std::byte*>(&snan), 4};
  EXPECT_EQ(first_non_finite(s), 0);
}

TEST(Safetensors, WriterRejectsBadInput) {
  TempDir dir;
  std::vector<float> v(4);
  auto st = write_safetensors(dir.sub("w.safetensors"), {{"t", DType::kF32, {5}, std::as_bytes(std::span(v))}});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("'t'"), std::string::npos) << st.error().message;
  st = write_safetensors(dir.sub("w.safetensors"), {{"t", DType::kF32, {4}, std::as_bytes(std::span(v))},
                                                    {"t", DType::kF32, {4}, std::as_bytes(std::span(v))}});
  ASSERT_FALSE(st.ok());
  st = write_safetensors(dir.sub("no/such/dir/w.safetensors"), {{"t", DType::kF32, {4}, std::as_bytes(std::span(v))}});
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::kIo);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 0);
}

TEST(Safetensors, InMemoryBytesAreTheFilesBytesAndReadBack) {
  TempDir dir;
  std::mt19937 rng(5);
  std::vector<float> a(6);
  std::vector<uint16_t> b(3);
  for (float& x : a) x = float(rng()) / 1e9f;
  for (uint16_t& x : b) x = uint16_t(rng());
  const std::vector<TensorToWrite> ts = {{"a", DType::kF32, {2, 3}, std::as_bytes(std::span(a))},
                                         {"b", DType::kBF16, {3}, std::as_bytes(std::span(b))}};
  const std::unordered_map<std::string, std::string> meta = {{"format", "pt"}};
  auto bytes = safetensors_bytes(ts, meta);
  ASSERT_TRUE(bytes.ok()) << bytes.error().to_string();
  ASSERT_TRUE(write_safetensors(dir.sub("w.safetensors"), ts, meta).ok());
  std::ifstream in(dir.sub("w.safetensors"), std::ios::binary);
  const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(bytes.value(), file);
  std::vector<std::byte> image(bytes->size());
  std::memcpy(image.data(), bytes->data(), image.size());
  auto back = SafetensorsFile::from_bytes(std::move(image), "mem");
  ASSERT_TRUE(back.ok()) << back.error().to_string();
  auto t = back.value()->find("a");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(std::memcmp(t->data, a.data(), a.size() * sizeof(float)), 0);
  // The same checks as the file writer's.
  EXPECT_FALSE(safetensors_bytes({{"a", DType::kF32, {7}, std::as_bytes(std::span(a))}}).ok());
}

TEST(Safetensors, MissingFileIsNotFound) {
  TempDir dir;
  auto f = SafetensorsFile::open(dir.sub("nope.safetensors"));
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.error().code, ErrorCode::kNotFound);
  EXPECT_NE(f.error().message.find("nope.safetensors"), std::string::npos);
}

TEST(SafetensorsHostile, FileShorterThanTheLengthField) {
  TempDir dir;
  expect_error(open_image(dir, std::string("\x05\x00\x00", 3)), ErrorCode::kBadFile, {"too small"});
}

TEST(SafetensorsHostile, HeaderLengthBeyondFile) {
  TempDir dir;
  expect_error(open_image(dir, image(kGood, 32, 5000)), ErrorCode::kBadFile, {"header length 5000", "beyond the end"});
}

TEST(SafetensorsHostile, HeaderLengthBeyondLimit) {
  TempDir dir;
  expect_error(open_image(dir, image(kGood, 32, kMaxSafetensorsHeaderBytes + 1)), ErrorCode::kBadFile,
               {std::to_string(kMaxSafetensorsHeaderBytes + 1).c_str(), "limit"});
  expect_error(open_image(dir, image(kGood, 32, ~uint64_t(0))), ErrorCode::kBadFile, {"limit"});
}

TEST(SafetensorsHostile, TruncatedData) {
  TempDir dir;
  expect_error(open_image(dir, image(kGood, 30)), ErrorCode::kBadFile, {"tensor 'b'", "truncated"});
}

TEST(SafetensorsHostile, EndBeforeBegin) {
  TempDir dir;
  expect_error(open_image(dir, image(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", 8)),
               ErrorCode::kBadFile, {"tensor 'a'", "before begin"});
}

TEST(SafetensorsHostile, OffsetsBeyondBuffer) {
  TempDir dir;
  expect_error(open_image(dir, image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[1000000,1000004]}})", 8)),
               ErrorCode::kBadFile, {"tensor 'a'", "1000004", "beyond the data buffer"});
}

TEST(SafetensorsHostile, ByteLengthDoesNotMatchShape) {
  TempDir dir;
  expect_error(open_image(dir, image(R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})", 20)),
               ErrorCode::kBadFile, {"tensor 'a'", "20 bytes", "needs 24"});
}

TEST(SafetensorsHostile, OverlappingTensors) {
  TempDir dir;
  expect_error(open_image(dir, image(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                                     R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                                     16)),
               ErrorCode::kBadFile, {"overlaps", "'a'", "'b'"});
}

TEST(SafetensorsHostile, HoleAndTrailingBytes) {
  TempDir dir;
  expect_error(open_image(dir, image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8)),
               ErrorCode::kBadFile, {"hole of 4 bytes", "'a'"});
  expect_error(open_image(dir, image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8)),
               ErrorCode::kBadFile, {"4 bytes after the last tensor"});
}

TEST(SafetensorsHostile, DuplicateNames) {
  TempDir dir;
  expect_error(open_image(dir, image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                     R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                     8)),
               ErrorCode::kBadFile, {"tensor 'a'", "twice"});
}

TEST(SafetensorsHostile, BadShapes) {
  TempDir dir;
  expect_error(open_image(dir, image(R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4)),
               ErrorCode::kBadFile, {"tensor 'a'", "1.5", "not a non-negative integer"});
  expect_error(open_image(dir, image(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4)),
               ErrorCode::kBadFile, {"tensor 'a'", "-1"});
  expect_error(open_image(dir, image(R"({"a":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})", 8)),
               ErrorCode::kBadFile, {"tensor 'a'", "\"2\""});
  expect_error(open_image(dir, image(R"({"a":{"dtype":"F32","shape":3,"data_offsets":[0,12]}})", 12)),
               ErrorCode::kBadFile, {"tensor 'a'", "shape"});
  expect_error(open_image(dir, image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,-4]}})", 4)),
               ErrorCode::kBadFile, {"tensor 'a'", "data_offsets"});
  expect_error(open_image(dir, image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", 4)),
               ErrorCode::kBadFile, {"tensor 'a'", "data_offsets"});
}

TEST(SafetensorsHostile, NumelOverflow) {
  TempDir dir;
  expect_error(
      open_image(dir, image(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", 4)),
      ErrorCode::kBadFile, {"tensor 'a'", "overflows"});
  // numel fits int64 but numel * 4 bytes does not.
  expect_error(open_image(dir, image(R"({"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,4]}})", 4)),
               ErrorCode::kBadFile, {"tensor 'a'", "overflows"});
}

TEST(SafetensorsHostile, UnsupportedDtypeNamesDtypeAndTensor) {
  TempDir dir;
  expect_error(open_image(dir, image(R"({"w":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", 8)),
               ErrorCode::kUnsupported, {"tensor 'w'", "'F64'"});
  expect_error(open_image(dir, image(R"({"w":{"dtype":"I8","shape":[4],"data_offsets":[0,4]}})", 4)),
               ErrorCode::kUnsupported, {"tensor 'w'", "'I8'"});
}

TEST(SafetensorsHostile, MalformedHeaders) {
  TempDir dir;
  expect_error(open_image(dir, image(R"({"a":{"dtype":"F32","shape":[1],)", 0)), ErrorCode::kBadFile, {"not valid JSON"});
  expect_error(open_image(dir, image(R"([1,2,3])", 0)), ErrorCode::kBadFile, {"'{'"});
  expect_error(open_image(dir, image(R"({"a":3})", 0)), ErrorCode::kBadFile, {"tensor 'a'", "not an object"});
  expect_error(open_image(dir, image(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", 4)), ErrorCode::kBadFile,
               {"tensor 'a'", "dtype"});
  expect_error(open_image(dir, image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", 4)),
               ErrorCode::kBadFile, {"tensor 'a'", "unknown field 'x'"});
  expect_error(open_image(dir, image(R"({"__metadata__":{"k":5}})", 0)), ErrorCode::kBadFile, {"__metadata__", "'k'"});
  expect_error(open_image(dir, image(R"({"__metadata__":[]})", 0)), ErrorCode::kBadFile, {"__metadata__"});
  expect_error(open_image(dir, image(std::string("{\"a\x01\":{}}"), 0)), ErrorCode::kBadFile, {"not valid JSON"});
  expect_error(open_image(dir, image(R"({"":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4)),
               ErrorCode::kBadFile, {"empty name"});
}

TEST(SafetensorsHostile, DeeplyNestedHeader) {
  // Dumping a 300k-deep value for an error message overflowed the stack.
  TempDir dir;
  const std::string deep = "{\"a\":" + std::string(300000, '[') + std::string(300000, ']') + "}";
  expect_error(open_image(dir, image(deep, 0)), ErrorCode::kBadFile, {"nested deeper than 64"});
  // Brackets inside strings do not count.
  const std::string in_name = "{\"" + std::string(100, '[') + "\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
  EXPECT_TRUE(open_image(dir, image(in_name, 4)).ok());
}

TEST(SafetensorsHostile, HeaderPaddedWithSpacesIsFine) {
  TempDir dir;
  auto f = open_image(dir, image(std::string(kGood) + "      ", 32));
  ASSERT_TRUE(f.ok()) << f.error().to_string();
  EXPECT_EQ((*f)->tensors().size(), 2u);
}

}  // namespace
}  // namespace myriad
