#include "runtime/adapter_id.h"

#include <charconv>

namespace myriad {

namespace {

bool id_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-';
}

Status check_part(std::string_view what, std::string_view s) {
  if (s.empty()) return make_error(ErrorCode::kInvalidArgument, std::string(what) + " is empty");
  if (s.size() > 64)
    return make_error(ErrorCode::kInvalidArgument,
                      std::string(what) + " '" + std::string(s.substr(0, 64)) + "...' is longer than 64 characters");
  if (s.front() == '.' || s.front() == '-')
    return make_error(ErrorCode::kInvalidArgument,
                      std::string(what) + " '" + std::string(s) + "' starts with '.' or '-'");
  for (char c : s)
    if (!id_char(c))
      return make_error(ErrorCode::kInvalidArgument, std::string(what) + " '" + std::string(s) +
                                                         "' has a character outside [A-Za-z0-9._-]");
  return ok_status();
}

// "N" (>= 1), "latest" (0) or an error naming `text`.
Result<uint64_t> parse_version(std::string_view text, std::string_view whole, bool allow_latest) {
  if (allow_latest && text == "latest") return uint64_t(0);
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size() || v == 0)
    return make_error(ErrorCode::kInvalidArgument, "adapter '" + std::string(whole) + "': version '" +
                                                       std::string(text) + "' is not a number >= 1" +
                                                       (allow_latest ? " or 'latest'" : ""));
  return v;
}

}  // namespace

std::string AdapterId::to_string() const { return tenant + "/" + name + "@" + std::to_string(version); }

size_t AdapterIdHash::operator()(const AdapterId& id) const noexcept {
  const size_t h = std::hash<std::string>()(id.tenant) * 31 + std::hash<std::string>()(id.name);
  return h ^ (size_t(id.version) * 0x9e3779b97f4a7c15ull);
}

std::string AdapterName::to_string() const {
  std::string s = tenant + "/" + name;
  if (version != 0) {
    s += '@';
    s += std::to_string(version);
  }
  return s;
}

Status check_tenant(std::string_view tenant) { return check_part("tenant", tenant); }
Status check_adapter_name(std::string_view name) { return check_part("adapter name", name); }

Result<AdapterName> parse_adapter_name(std::string_view text, std::string_view default_tenant) {
  AdapterName out;
  std::string_view rest = text;
  if (const size_t at = rest.find('@'); at != std::string_view::npos) {
    auto v = parse_version(rest.substr(at + 1), text, /*allow_latest=*/true);
    if (!v.ok()) return v.error();
    out.version = v.value();
    rest = rest.substr(0, at);
  }
  if (const size_t slash = rest.find('/'); slash != std::string_view::npos) {
    out.tenant = std::string(rest.substr(0, slash));
    out.name = std::string(rest.substr(slash + 1));
  } else {
    out.tenant = std::string(default_tenant);
    out.name = std::string(rest);
  }
  auto prefix = [&](const Error& e) {
    return make_error(e.code, "adapter '" + std::string(text) + "': " + e.message);
  };
  if (auto s = check_tenant(out.tenant); !s.ok()) return prefix(s.error());
  if (auto s = check_adapter_name(out.name); !s.ok()) return prefix(s.error());
  return out;
}

Result<AdapterName> parse_adapter_name_for(std::string_view text, std::string_view caller_tenant, bool admin) {
  auto n = parse_adapter_name(text, caller_tenant);
  if (!n.ok()) return n.error();
  if (!admin && n.value().tenant != caller_tenant)
    return make_error(ErrorCode::kNotFound, "adapter '" + std::string(text) + "' does not exist");
  return n;
}

Result<AdapterId> parse_adapter_id(std::string_view text) {
  const size_t at = text.rfind('@');
  if (at == std::string_view::npos)
    return make_error(ErrorCode::kInvalidArgument, "adapter id '" + std::string(text) + "' has no '@version'");
  auto v = parse_version(text.substr(at + 1), text, /*allow_latest=*/false);
  if (!v.ok()) return v.error();
  const std::string_view qualified = text.substr(0, at);
  if (qualified.find('/') == std::string_view::npos)
    return make_error(ErrorCode::kInvalidArgument, "adapter id '" + std::string(text) + "' has no 'tenant/'");
  auto n = parse_adapter_name(qualified, "");
  if (!n.ok()) return n.error();
  return n.value().pinned(v.value());
}

}  // namespace myriad
