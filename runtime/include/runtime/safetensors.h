// A memory-mapped .safetensors file: a validated header and zero-copy views
// of each tensor's bytes. The mapping lives as long as the SafetensorsFile.
// Thread-safe for concurrent reads once opened.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "runtime/dtype.h"
#include "runtime/result.h"

namespace myriad {

// A tensor inside a mapped file. `data` is not necessarily aligned to the
// element size (it is when the file was written by write_safetensors and the
// writer kept offsets aligned); read elements with memcpy or at().
struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;  // into the mapping; little-endian, row-major
  size_t nbytes = 0;

  int64_t numel() const;
  float at(size_t i) const;  // element i converted to f32 (for tests and loaders)
};

// Index of the first NaN or infinite element of `t`, or -1 when every element
// is finite. Tests the stored bits (an all-ones exponent) in one pass, with no
// conversion; loaders call it so a poisoned file is refused, not served.
int64_t first_non_finite(const TensorView& t);

// Largest header we accept; real headers are well under this.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;

class SafetensorsFile {
 public:
  // Opens and validates: header length within the file and the limit, JSON
  // well formed, known dtypes, shapes matching byte ranges, offsets in range,
  // no overlapping tensors. Errors name the file and the tensor.
  static Result<std::shared_ptr<SafetensorsFile>> open(const std::string& path);
  // Parses an in-memory image (the fuzz target and tests use this).
  static Result<std::shared_ptr<SafetensorsFile>> from_bytes(std::vector<std::byte> bytes, const std::string& name);
  // The same over a copy of `bytes` (a message's payload, safetensors_bytes' output).
  static Result<std::shared_ptr<SafetensorsFile>> from_bytes(std::string_view bytes, const std::string& name);

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find(std::string_view name) const;
  const std::unordered_map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  Status parse(const std::byte* base, size_t size);

  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::vector<std::byte> owned_;  // from_bytes
  std::vector<TensorView> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::unordered_map<std::string, std::string> metadata_;
};

// Writes a safetensors file atomically (temp file, fsync, rename).
struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::span<const std::byte> data;
};
// The data buffer starts 8-byte aligned (the header is padded with spaces);
// tensors are laid out in the given order.
Status write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                         const std::unordered_map<std::string, std::string>& metadata = {{"format", "pt"}});

// The bytes write_safetensors would write, in memory (for messages; read
// them back with SafetensorsFile::from_bytes).
Result<std::string> safetensors_bytes(const std::vector<TensorToWrite>& tensors,
                                      const std::unordered_map<std::string, std::string>& metadata = {});

// Streaming writer for tensors too large to hold in memory at once.
struct TensorSpec {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
};
uint64_t tensor_spec_nbytes(const TensorSpec& t);
// The header JSON (padded so that 8 + size is a multiple of 8) for tensors
// laid out in order; errors on duplicate/empty names or negative dims.
Result<std::string> safetensors_header(const std::vector<TensorSpec>& tensors,
                                       const std::unordered_map<std::string, std::string>& metadata);
// Same atomic protocol as write_safetensors; `write_tensor(i, fd, offset)`
// must write exactly tensor_spec_nbytes(tensors[i]) bytes at file offset
// `offset` (e.g. with write_at, from several threads if it likes). Tensors
// are requested in order.
Status write_safetensors_streamed(const std::string& path, const std::vector<TensorSpec>& tensors,
                                  const std::unordered_map<std::string, std::string>& metadata,
                                  const std::function<Status(size_t index, int fd, uint64_t file_offset)>& write_tensor);
// pwrite() until done; errors name `path`.
Status write_at(int fd, const void* data, size_t nbytes, uint64_t file_offset, const std::string& path);

}  // namespace myriad
