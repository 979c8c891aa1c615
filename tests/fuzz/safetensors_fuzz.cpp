// libFuzzer target: SafetensorsFile::from_bytes on arbitrary bytes. A
// parse that succeeds must give views that lie inside the input (ASan
// checks every byte read) and consistent sizes.
#include <cstdlib>
#include <cstring>
#include <vector>

#include "runtime/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::byte> bytes(size);
  if (size) std::memcpy(bytes.data(), data, size);
  auto f = myriad::SafetensorsFile::from_bytes(std::move(bytes), "fuzz.safetensors");
  if (!f.ok()) {
    if (f.error().message.find("fuzz.safetensors") == std::string::npos) std::abort();  // errors name the file
    return 0;
  }
  uint64_t total = 0;
  unsigned acc = 0;
  for (const auto& t : (*f)->tensors()) {
    if (uint64_t(t.numel()) * myriad::dtype_size(t.dtype) != t.nbytes) std::abort();
    if ((*f)->find(t.name) != &t) std::abort();
    for (size_t i = 0; i < t.nbytes; ++i) acc += unsigned(t.data[i]);
    if (t.numel() > 0) {
      volatile float x = t.at(0);
      volatile float y = t.at(size_t(t.numel() - 1));
      (void)x;
      (void)y;
    }
    total += t.nbytes;
  }
  if (total + 8 > size) std::abort();
  volatile unsigned sink = acc;
  (void)sink;
  return 0;
}
