// Safetensors reader (mmap, validated header, zero-copy views) and atomic
// writer. Format: 8-byte little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}},
// then the data buffer; offsets are relative to the buffer, which must be
// covered exactly (no holes, no overlaps, nothing trailing).
#include "runtime/safetensors.h"

#include "runtime/atomic_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "json_depth.h"

namespace myriad {

namespace {

using json = nlohmann::json;

Error bad(const std::string& file, const std::string& what) {
  return make_error(ErrorCode::kBadFile, file + ": " + what);
}

std::string quote_name(std::string_view s) {
  // Names come from hostile files: cap the length and escape control bytes.
  std::string out = "'";
  size_t n = 0;
  for (char c : s) {
    if (++n > 200) {
      out += "...";
      break;
    }
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string json_excerpt(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 80) + "...";
  return s;
}

// A non-negative integer that fits in uint64 (JSON floats, negatives and
// non-numbers are rejected).
bool as_u64(const json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (i < 0) return false;
    *out = uint64_t(i);
    return true;
  }
  return false;
}

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }

}  // namespace

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {

// Scans `n` elements of type U for an exponent field that is all ones (NaN or
// infinity) a block at a time: the block's OR-reduction vectorizes; only a
// block that has one is searched element by element.
template <class U>
int64_t first_with_exponent(const std::byte* data, size_t n, U exponent_mask) {
  constexpr size_t kBlock = 1024;
  U block[kBlock];
  for (size_t begin = 0; begin < n; begin += kBlock) {
    const size_t len = std::min(kBlock, n - begin);
    std::memcpy(block, data + begin * sizeof(U), len * sizeof(U));  // `data` may be unaligned
    bool any = false;
    for (size_t i = 0; i < len; ++i) any |= (block[i] & exponent_mask) == exponent_mask;
    if (!any) continue;
    for (size_t i = 0; i < len; ++i)
      if ((block[i] & exponent_mask) == exponent_mask) return int64_t(begin + i);
  }
  return -1;
}

}  // namespace

int64_t first_non_finite(const TensorView& t) {
  const size_t n = size_t(t.numel());
  switch (t.dtype) {
    case DType::kF32: return first_with_exponent<uint32_t>(t.data, n, 0x7f800000u);
    case DType::kF16: return first_with_exponent<uint16_t>(t.data, n, uint16_t(0x7c00));
    case DType::kBF16: return first_with_exponent<uint16_t>(t.data, n, uint16_t(0x7f80));
  }
  return -1;
}

float TensorView::at(size_t i) const {
  MYRIAD_CHECK(i < size_t(numel()), "TensorView::at: index " + std::to_string(i) + " out of range for " + name);
  const std::byte* p = data + i * dtype_size(dtype);
  switch (dtype) {
    case DType::kF32: {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    case DType::kF16: {
      uint16_t h;
      std::memcpy(&h, p, 2);
      return f16_to_f32(h);
    }
    case DType::kBF16: {
      uint16_t h;
      std::memcpy(&h, p, 2);
      return bf16_to_f32(h);
    }
  }
  return 0.0f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) munmap(map_, map_size_);
}

const TensorView* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Result<std::shared_ptr<SafetensorsFile>> SafetensorsFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    return make_error(e == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
                      path + ": cannot open: " + std::strerror(e));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    return make_error(ErrorCode::kIo, path + ": fstat failed: " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return bad(path, "not a regular file");
  }
  const size_t size = size_t(st.st_size);
  if (size < 8) {
    ::close(fd);
    return bad(path, "file is " + std::to_string(size) + " bytes, too small for the 8-byte header length");
  }
  void* map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int e = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED) return make_error(ErrorCode::kIo, path + ": mmap failed: " + std::strerror(e));
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->map_ = map;
  f->map_size_ = size;
  MYRIAD_TRY(f->parse(static_cast<const std::byte*>(map), size));
  return f;
}

Result<std::shared_ptr<SafetensorsFile>> SafetensorsFile::from_bytes(std::string_view bytes, const std::string& name) {
  std::vector<std::byte> copy(bytes.size());
  if (!bytes.empty()) std::memcpy(copy.data(), bytes.data(), bytes.size());
  return from_bytes(std::move(copy), name);
}

Result<std::shared_ptr<SafetensorsFile>> SafetensorsFile::from_bytes(std::vector<std::byte> bytes,
                                                                     const std::string& name) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = name;
  f->owned_ = std::move(bytes);
  MYRIAD_TRY(f->parse(f->owned_.data(), f->owned_.size()));
  return f;
}

Status SafetensorsFile::parse(const std::byte* base, size_t size) {
  const std::string& file = path_;
  if (size < 8)
    return bad(file, "file is " + std::to_string(size) + " bytes, too small for the 8-byte header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | uint64_t(base[i]);
  if (header_len > kMaxSafetensorsHeaderBytes)
    return bad(file, "header length " + std::to_string(header_len) + " exceeds the limit of " +
                         std::to_string(kMaxSafetensorsHeaderBytes) + " bytes");
  if (header_len > size - 8)
    return bad(file, "header length " + std::to_string(header_len) + " goes beyond the end of the file (" +
                         std::to_string(size) + " bytes): truncated or corrupt");
  if (header_len < 2) return bad(file, "header length " + std::to_string(header_len) + " is too small for a JSON object");
  const char* hdr = reinterpret_cast<const char*>(base + 8);
  if (hdr[0] != '{') return bad(file, "header does not start with '{'");
  if (json_too_deep(std::string_view(hdr, header_len)))
    return bad(file, "header JSON is nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");

  // Collect top-level keys while parsing: nlohmann keeps only the last of
  // duplicate keys, and a duplicate tensor name must be an error.
  std::string duplicate;
  std::unordered_set<std::string> seen;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key && duplicate.empty()) {
      const std::string& k = parsed.get_ref<const std::string&>();
      if (!seen.insert(k).second) duplicate = k;
    }
    return true;
  };
  json header = json::parse(hdr, hdr + header_len, cb, /*allow_exceptions=*/false);
  if (header.is_discarded()) return bad(file, "header is not valid JSON");
  if (!header.is_object()) return bad(file, "header is not a JSON object");
  if (!duplicate.empty()) return bad(file, "tensor " + quote_name(duplicate) + " appears twice in the header");

  const uint64_t data_size = size - 8 - header_len;
  const std::byte* data = base + 8 + header_len;
  struct Range {
    uint64_t begin, end;
    size_t tensor;
  };
  std::vector<Range> ranges;
  tensors_.clear();
  index_.clear();
  metadata_.clear();
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) return bad(file, "__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          return bad(file, "__metadata__ value of " + quote_name(m.key()) + " is not a string: " + json_excerpt(m.value()));
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor " + quote_name(name);
    if (name.empty()) return bad(file, "a tensor has an empty name");
    if (!v.is_object()) return bad(file, where + ": entry is not an object");
    for (auto f = v.begin(); f != v.end(); ++f) {
      if (f.key() != "dtype" && f.key() != "shape" && f.key() != "data_offsets")
        return bad(file, where + ": unknown field " + quote_name(f.key()));
    }
    auto dt = v.find("dtype");
    auto sh = v.find("shape");
    auto off = v.find("data_offsets");
    if (dt == v.end() || !dt->is_string()) return bad(file, where + ": missing or non-string dtype");
    if (sh == v.end() || !sh->is_array()) return bad(file, where + ": missing or non-array shape");
    if (off == v.end() || !off->is_array()) return bad(file, where + ": missing or non-array data_offsets");
    const std::string dtype_s = dt->get<std::string>();
    const auto dtype = dtype_from_safetensors(dtype_s);
    if (!dtype)
      return make_error(ErrorCode::kUnsupported, file + ": " + where + ": dtype " + quote_name(dtype_s) +
                                                     " is not supported (F32, F16, BF16)");
    if (sh->size() > 8) return bad(file, where + ": shape has " + std::to_string(sh->size()) + " dimensions (at most 8)");
    TensorView t;
    t.name = name;
    t.dtype = *dtype;
    uint64_t numel = 1;
    for (const json& d : *sh) {
      uint64_t dim = 0;
      if (!as_u64(d, &dim) || dim > uint64_t(std::numeric_limits<int64_t>::max()))
        return bad(file, where + ": shape element " + json_excerpt(d) + " is not a non-negative integer");
      if (mul_overflows(numel, dim, &numel) || numel > uint64_t(std::numeric_limits<int64_t>::max()))
        return bad(file, where + ": shape " + json_excerpt(*sh) + " overflows the element count");
      t.shape.push_back(int64_t(dim));
    }
    uint64_t nbytes = 0;
    if (mul_overflows(numel, dtype_size(*dtype), &nbytes))
      return bad(file, where + ": shape " + json_excerpt(*sh) + " overflows the byte count");
    uint64_t begin = 0, end = 0;
    if (off->size() != 2 || !as_u64((*off)[0], &begin) || !as_u64((*off)[1], &end))
      return bad(file, where + ": data_offsets " + json_excerpt(*off) + " is not two non-negative integers");
    if (end < begin)
      return bad(file, where + ": data_offsets end " + std::to_string(end) + " is before begin " + std::to_string(begin));
    if (end > data_size)
      return bad(file, where + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                           "] go beyond the data buffer (" + std::to_string(data_size) + " bytes): truncated file?");
    if (end - begin != nbytes)
      return bad(file, where + ": data_offsets cover " + std::to_string(end - begin) + " bytes but shape " +
                           json_excerpt(*sh) + " of " + dtype_s + " needs " + std::to_string(nbytes));
    t.data = data + begin;
    t.nbytes = size_t(nbytes);
    ranges.push_back({begin, end, tensors_.size()});
    index_.emplace(name, tensors_.size());
    tensors_.push_back(std::move(t));
  }

  // The buffer must be covered exactly: no overlaps, no holes, no trailer.
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t pos = 0;
  for (size_t i = 0; i < ranges.size(); ++i) {
    const Range& r = ranges[i];
    if (r.begin < pos) {
      return bad(file, "tensor " + quote_name(tensors_[r.tensor].name) + " (bytes " + std::to_string(r.begin) + ".." +
                           std::to_string(r.end) + ") overlaps tensor " + quote_name(tensors_[ranges[i - 1].tensor].name));
    }
    if (r.begin > pos)
      return bad(file, "data buffer has a hole of " + std::to_string(r.begin - pos) + " bytes before tensor " +
                           quote_name(tensors_[r.tensor].name));
    pos = r.end;
  }
  if (pos != data_size)
    return bad(file, "data buffer has " + std::to_string(data_size - pos) + " bytes after the last tensor");
  return ok_status();
}

// ---------------------------------------------------------------- writing

namespace {

Status write_all(int fd, const void* p, size_t n, const std::string& path) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t w = ::write(fd, c, std::min<size_t>(n, size_t(1) << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      return make_error(ErrorCode::kIo, path + ": write failed: " + std::strerror(errno));
    }
    c += w;
    n -= size_t(w);
  }
  return ok_status();
}

}  // namespace

Status write_at(int fd, const void* p, size_t n, uint64_t off, const std::string& path) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, c, std::min<size_t>(n, size_t(1) << 30), off_t(off));
    if (w < 0) {
      if (errno == EINTR) continue;
      return make_error(ErrorCode::kIo, path + ": write failed: " + std::strerror(errno));
    }
    if (w == 0) return make_error(ErrorCode::kIo, path + ": write made no progress");
    c += w;
    n -= size_t(w);
    off += uint64_t(w);
  }
  return ok_status();
}

Result<std::string> safetensors_header(const std::vector<TensorSpec>& tensors,
                                       const std::unordered_map<std::string, std::string>& metadata) {
  json h = json::object();
  if (!metadata.empty()) {
    json m = json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    h["__metadata__"] = m;
  }
  uint64_t offset = 0;
  for (const TensorSpec& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__")
      return make_error(ErrorCode::kInvalidArgument, "bad tensor name " + quote_name(t.name));
    if (h.contains(t.name)) return make_error(ErrorCode::kInvalidArgument, "tensor " + quote_name(t.name) + " given twice");
    uint64_t n = dtype_size(t.dtype);
    for (int64_t d : t.shape) {
      if (d < 0) return make_error(ErrorCode::kInvalidArgument, "tensor " + quote_name(t.name) + " has a negative dimension");
      n *= uint64_t(d);
    }
    h[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string s = h.dump();
  // Pad with spaces so the data buffer starts 8-byte aligned in the file.
  while ((8 + s.size()) % 8 != 0) s.push_back(' ');
  return s;
}

uint64_t tensor_spec_nbytes(const TensorSpec& t) {
  uint64_t n = dtype_size(t.dtype);
  for (int64_t d : t.shape) n *= uint64_t(d);
  return n;
}

Status write_safetensors_streamed(const std::string& path, const std::vector<TensorSpec>& tensors,
                                  const std::unordered_map<std::string, std::string>& metadata,
                                  const std::function<Status(size_t index, int fd, uint64_t file_offset)>& write_tensor) {
  auto header = safetensors_header(tensors, metadata);
  if (!header.ok()) return header.error();
  // Written whole or not at all (runtime/atomic_file.h).
  return write_file_atomically_with(path, [&](int fd, const std::string& tmp) -> Status {
    uint8_t len[8];
    const uint64_t n = header->size();
    for (int i = 0; i < 8; ++i) len[i] = uint8_t(n >> (8 * i));
    MYRIAD_TRY(write_all(fd, len, 8, tmp));
    MYRIAD_TRY(write_all(fd, header->data(), header->size(), tmp));
    uint64_t offset = 8 + n;
    for (size_t i = 0; i < tensors.size(); ++i) {
      MYRIAD_TRY(write_tensor(i, fd, offset));
      offset += tensor_spec_nbytes(tensors[i]);
    }
    // Tensors are written at their offsets: the file ends where the last one does.
    if (::ftruncate(fd, off_t(offset)) != 0)
      return make_error(ErrorCode::kIo, tmp + ": truncate failed: " + std::strerror(errno));
    return ok_status();
  });
}

namespace {
// The specs of tensors whose buffers match their shapes.
Result<std::vector<TensorSpec>> specs_of(const std::vector<TensorToWrite>& tensors) {
  std::vector<TensorSpec> specs;
  specs.reserve(tensors.size());
  for (const auto& t : tensors) {
    specs.push_back({t.name, t.dtype, t.shape});
    for (int64_t d : t.shape)
      if (d < 0) return make_error(ErrorCode::kInvalidArgument, "tensor " + quote_name(t.name) + " has a negative dimension");
    if (tensor_spec_nbytes(specs.back()) != t.data.size())
      return make_error(ErrorCode::kInvalidArgument,
                        "tensor " + quote_name(t.name) + ": " + std::to_string(t.data.size()) + " bytes given, shape needs " +
                            std::to_string(tensor_spec_nbytes(specs.back())));
  }
  return specs;
}
}  // namespace

Result<std::string> safetensors_bytes(const std::vector<TensorToWrite>& tensors,
                                      const std::unordered_map<std::string, std::string>& metadata) {
  auto specs = specs_of(tensors);
  if (!specs.ok()) return specs.error();
  auto header = safetensors_header(specs.value(), metadata);
  if (!header.ok()) return header.error();
  size_t total = 8 + header->size();
  for (const auto& t : tensors) total += t.data.size();
  std::string out;
  out.reserve(total);
  const uint64_t n = header->size();
  for (int i = 0; i < 8; ++i) out.push_back(char(uint8_t(n >> (8 * i))));
  out += header.value();
  for (const auto& t : tensors) out.append(reinterpret_cast<const char*>(t.data.data()), t.data.size());
  return out;
}

Status write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                         const std::unordered_map<std::string, std::string>& metadata) {
  auto specs_or = specs_of(tensors);
  if (!specs_or.ok()) return specs_or.error();
  const std::vector<TensorSpec>& specs = specs_or.value();
  return write_safetensors_streamed(path, specs, metadata, [&](size_t i, int fd, uint64_t offset) {
    return write_at(fd, tensors[i].data.data(), tensors[i].data.size(), offset, path);
  });
}

}  // namespace myriad
