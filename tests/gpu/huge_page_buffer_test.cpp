// HugePageBuffer: a 2 MiB-aligned anonymous range, zero-filled, movable.
#include "gpu/cpu/huge_page_buffer.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <utility>

namespace myriad::gpu::cpu {
namespace {

constexpr size_t kHuge = size_t(2) << 20;

TEST(HugePageBuffer, AlignedRoundedZeroFilledAndMovable) {
  auto r = HugePageBuffer::allocate(5 * kHuge + 123);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  HugePageBuffer b = std::move(*r);
  ASSERT_NE(b.data(), nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % kHuge, 0u);
  EXPECT_EQ(b.size(), 6 * kHuge);
  auto* p = static_cast<unsigned char*>(b.data());
  EXPECT_EQ(p[0], 0);
  EXPECT_EQ(p[b.size() - 1], 0);
  std::memset(p, 0x5a, b.size());  // every byte is ours
  EXPECT_LE(b.huge_pages_granted(), b.size());

  HugePageBuffer moved = std::move(b);
  EXPECT_EQ(b.data(), nullptr);  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
  EXPECT_EQ(b.size(), 0u);
  EXPECT_EQ(static_cast<unsigned char*>(moved.data())[kHuge], 0x5a);
  HugePageBuffer other = std::move(HugePageBuffer::allocate(1).value());
  other = std::move(moved);
  EXPECT_EQ(other.size(), 6 * kHuge);
}

TEST(HugePageBuffer, ZeroBytesIsEmpty) {
  auto r = HugePageBuffer::allocate(0);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->data(), nullptr);
  EXPECT_EQ(r->size(), 0u);
  EXPECT_EQ(r->huge_pages_granted(), 0u);
}

TEST(HugePageBuffer, ImpossibleSizeIsAnErrorNotACrash) {
  auto r = HugePageBuffer::allocate(size_t(1) << 62);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kResourceExhausted);
  EXPECT_NE(r.error().to_string().find("mmap"), std::string::npos);
}

TEST(HugePageBuffer, MemAvailableIsReported) { EXPECT_GT(mem_available_bytes(), size_t(0)); }

}  // namespace
}  // namespace myriad::gpu::cpu
