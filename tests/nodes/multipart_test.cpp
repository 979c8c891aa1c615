#include "multipart.h"

#include <gtest/gtest.h>

namespace myriad::node {
namespace {

using namespace std::string_literals;

TEST(Multipart, ReadsFieldsAndFilesAsCurlSendsThem) {
  const std::string body =
      "--XyZ\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nalpha/chat\r\n"
      "--XyZ\r\nContent-Disposition: form-data; name=\"config\"; filename=\"adapter_config.json\"\r\n"
      "Content-Type: application/json\r\n\r\n{\"r\": 8}\r\n"
      "--XyZ\r\nContent-Disposition: form-data; name=\"weights\"; filename=\"adapter_model.safetensors\"\r\n\r\n"
      "\x01\x02\r\n--\x00\x03\r\n"s  // binary, with a NUL and a "--" inside
      "--XyZ--\r\n";
  auto parts = parse_multipart("multipart/form-data; boundary=XyZ", std::string_view(body.data(), body.size()));
  ASSERT_TRUE(parts.ok()) << parts.error().to_string();
  ASSERT_EQ(parts->size(), 3u);
  EXPECT_EQ((*parts)[0].name, "name");
  EXPECT_EQ((*parts)[0].data, "alpha/chat");
  EXPECT_EQ((*parts)[1].filename, "adapter_config.json");
  EXPECT_EQ((*parts)[1].data, "{\"r\": 8}");
  EXPECT_EQ((*parts)[2].filename, "adapter_model.safetensors");
  EXPECT_EQ((*parts)[2].data, std::string_view("\x01\x02\r\n--\x00\x03", 8));  // binary kept byte for byte
}

TEST(Multipart, MalformedBodiesAreRefusedNamingTheProblem) {
  auto e = [](std::string_view ct, std::string_view body) {
    auto r = parse_multipart(ct, body);
    return r.ok() ? std::string("ok") : r.error().message;
  };
  EXPECT_NE(e("application/json", "{}").find("not multipart/form-data"), std::string::npos);
  EXPECT_NE(e("multipart/form-data", "x").find("boundary"), std::string::npos);
  EXPECT_NE(e("multipart/form-data; boundary=b", "nothing").find("never appears"), std::string::npos);
  EXPECT_NE(e("multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--")
                .find("no Content-Disposition name"),
            std::string::npos);
  EXPECT_NE(e("multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx")
                .find("never ends"),
            std::string::npos);
  EXPECT_EQ(e("multipart/form-data; boundary=\"b\"", "--b--"), "ok");
}

}  // namespace
}  // namespace myriad::node
