// SHA-256 (FIPS 180-4), streaming: the adapter store names and checks its
// files by it. Small and portable (no CPU extensions): hashing an adapter
// costs milliseconds next to the disk I/O around it.
//
//   Sha256 h;
//   h.update(part1);
//   h.update(part2);
//   std::string hex = h.hex_digest();  // 64 lowercase hex digits
//
// One Sha256 is not thread-safe; separate objects are independent.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace myriad {

class Sha256 {
 public:
  using Digest = std::array<uint8_t, 32>;

  Sha256() { reset(); }
  void reset();
  void update(const void* data, size_t size);
  void update(std::string_view bytes) { update(bytes.data(), bytes.size()); }
  // The digest of everything updated since the last reset; resets.
  Digest finish();
  std::string hex_digest();  // finish() as 64 lowercase hex digits

 private:
  void compress(const uint8_t* block);  // one 64-byte block

  std::array<uint32_t, 8> state_{};
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;  // bytes in buffer_
  uint64_t total_bytes_ = 0;
};

// Lowercase hex of a digest.
std::string to_hex(const Sha256::Digest& digest);
// The hex digest of one buffer.
std::string sha256_hex(std::string_view bytes);

}  // namespace myriad
