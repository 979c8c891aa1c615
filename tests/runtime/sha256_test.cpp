// SHA-256 against the FIPS 180-2 example messages, and streaming in pieces
// equal to hashing at once (every split of a message that crosses blocks).
#include "runtime/sha256.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

namespace myriad {
namespace {

TEST(Sha256, Fips180Vectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  // One million 'a', fed in uneven pieces.
  Sha256 h;
  const std::string piece(997, 'a');
  size_t left = 1000000;
  while (left > 0) {
    const size_t n = std::min(left, piece.size());
    h.update(piece.data(), n);
    left -= n;
  }
  EXPECT_EQ(h.hex_digest(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, StreamingEqualsOneShotAtEverySplit) {
  std::string msg;
  for (int i = 0; i < 200; ++i) msg += char('A' + i % 53);
  for (size_t len : {0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 200}) {
    const std::string m = msg.substr(0, len);
    const std::string want = sha256_hex(m);
    for (size_t split = 0; split <= len; ++split) {
      Sha256 h;
      h.update(std::string_view(m).substr(0, split));
      h.update(std::string_view(m).substr(split));
      ASSERT_EQ(h.hex_digest(), want) << "length " << len << " split at " << split;
    }
  }
}

TEST(Sha256, FinishResetsForTheNextMessage) {
  Sha256 h;
  h.update("something else");
  (void)h.finish();
  h.update("abc");
  EXPECT_EQ(h.hex_digest(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace
}  // namespace myriad
