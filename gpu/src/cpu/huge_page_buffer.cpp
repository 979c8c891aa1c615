#include "gpu/cpu/huge_page_buffer.h"

#include <sys/mman.h>

#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

namespace myriad::gpu::cpu {
namespace {
constexpr size_t kHugePage = size_t(2) << 20;
}

Result<HugePageBuffer> HugePageBuffer::allocate(size_t bytes) {
  HugePageBuffer b;
  if (bytes == 0) return b;
  const size_t size = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  // Over-reserve by one huge page, then trim to a 2 MiB-aligned range.
  void* raw = mmap(nullptr, size + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) {
    return make_error(ErrorCode::kResourceExhausted,
                      "HugePageBuffer: mmap of " + std::to_string(size) + " bytes failed: " + std::strerror(errno));
  }
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + kHugePage - 1) / kHugePage * kHugePage;
  if (aligned > start) munmap(raw, aligned - start);
  const uintptr_t end = start + size + kHugePage;
  if (end > aligned + size) munmap(reinterpret_cast<void*>(aligned + size), end - (aligned + size));
  b.data_ = reinterpret_cast<void*>(aligned);
  b.size_ = size;
  (void)madvise(b.data_, size, MADV_HUGEPAGE);  // advice only: failure leaves 4 KiB pages
  return b;
}

HugePageBuffer::~HugePageBuffer() { release(); }

HugePageBuffer::HugePageBuffer(HugePageBuffer&& o) noexcept : data_(o.data_), size_(o.size_) {
  o.data_ = nullptr;
  o.size_ = 0;
}

HugePageBuffer& HugePageBuffer::operator=(HugePageBuffer&& o) noexcept {
  if (this != &o) {
    release();
    data_ = o.data_;
    size_ = o.size_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

void HugePageBuffer::release() {
  if (data_) munmap(data_, size_);
  data_ = nullptr;
  size_ = 0;
}

size_t HugePageBuffer::huge_pages_granted() const {
  if (!data_) return 0;
  FILE* f = std::fopen("/proc/self/smaps", "r");
  if (!f) return 0;
  const uintptr_t lo = reinterpret_cast<uintptr_t>(data_), hi = lo + size_;
  char line[512];
  bool inside = false;
  size_t total_kb = 0;
  while (std::fgets(line, sizeof line, f)) {
    uintptr_t a = 0, b = 0;
    if (std::sscanf(line, "%" SCNxPTR "-%" SCNxPTR " ", &a, &b) == 2 && std::strchr(line, '-') < std::strchr(line, ' ')) {
      inside = a < hi && b > lo;  // a mapping line; the kernel may have split our range
      continue;
    }
    size_t kb = 0;
    if (inside && std::sscanf(line, "AnonHugePages: %zu kB", &kb) == 1) total_kb += kb;
  }
  std::fclose(f);
  return total_kb * 1024;
}

size_t mem_available_bytes() {
  FILE* f = std::fopen("/proc/meminfo", "r");
  if (!f) return 0;
  char line[256];
  size_t kb = 0;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "MemAvailable: %zu kB", &kb) == 1) break;
  std::fclose(f);
  return kb * 1024;
}

}  // namespace myriad::gpu::cpu
