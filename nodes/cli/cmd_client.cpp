// The client commands of `myriad` (full build only): a node's Cap'n Proto
// RPC API (schema/api.capnp) at --server HOST:PORT.
//   myriad complete --server H:P [--api-key K] --model M (--prompt T | --ids 1,2 | stdin) [sampling] [--json]
//   myriad chat     --server H:P [--api-key K] --model M [--system T] [TEXT | stdin] [sampling] [--json]
//   myriad adapters add --server H:P [--api-key K] --name [tenant/]name --path DIR
//   myriad adapters ls  --server H:P [--api-key K] [--json]
//   myriad adapters rm  --server H:P [--api-key K] --name [tenant/]name[@N]
//   myriad cluster ls   --server H:P [--api-key K] [--json]
//   myriad jobs create  --server H:P [--api-key K] --model BASE --file F.jsonl [hyperparameters] [--follow] [--json]
//   myriad jobs ls|get|cancel|events --server H:P [--api-key K] [ID] [--follow] [--json]
// chat and complete stream the text to stdout as the tokens arrive (--json:
// {"ids", "text", "finish_reason", "model", "prompt_tokens",
// "completion_tokens"} at the end instead). `adapters add` uploads
// adapter_model.safetensors from this host in 1 MiB chunks, then
// adapter_config.json. With --api-key (or $MYRIAD_API_KEY) the command logs
// in first; the node decides what the key's tenant may touch. A node's
// error prints its message and code to stderr and exits 1; a node that
// cannot be reached exits 1 too; bad usage exits 2.
#ifdef MYRIAD_CLI_FULL

#include <capnp/ez-rpc.h>
#include <unistd.h>
#include <kj/debug.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

#include "args.h"
#include "clock_text.h"
#include "commands.h"
#include "schema/api.capnp.h"

namespace myriad::cli {
namespace {

namespace api = schema::api;
using nlohmann::json;

std::string text_of(capnp::Text::Reader t) { return std::string(t.begin(), t.size()); }

const char* code_name(schema::ErrorCode code) {
  switch (code) {
    case schema::ErrorCode::INVALID_ARGUMENT: return "invalidArgument";
    case schema::ErrorCode::BAD_FILE: return "badFile";
    case schema::ErrorCode::NOT_FOUND: return "notFound";
    case schema::ErrorCode::UNSUPPORTED: return "unsupported";
    case schema::ErrorCode::RESOURCE_EXHAUSTED: return "resourceExhausted";
    case schema::ErrorCode::IO: return "io";
    case schema::ErrorCode::CANCELLED: return "cancelled";
    case schema::ErrorCode::DEADLINE_EXCEEDED: return "deadlineExceeded";
    case schema::ErrorCode::INTERNAL: return "internal";
    case schema::ErrorCode::UNAUTHENTICATED: return "unauthenticated";
    case schema::ErrorCode::UNAVAILABLE: return "unavailable";
    case schema::ErrorCode::OVERLOADED: return "overloaded";
  }
  return "unknown";
}

const char* finish_name(schema::FinishReason r) {
  switch (r) {
    case schema::FinishReason::STOP: return "stop";
    case schema::FinishReason::LENGTH: return "length";
    case schema::FinishReason::CANCELLED: return "cancelled";
    case schema::FinishReason::DEADLINE: return "deadline";
  }
  return "unknown";
}

int node_error(const char* cmd, schema::Error::Reader e) {
  std::fprintf(stderr, "myriad %s: %s (%s)\n", cmd, text_of(e.getMessage()).c_str(), code_name(e.getCode()));
  return 1;
}

int usage_error(const char* cmd, const std::string& message) {
  std::fprintf(stderr, "myriad %s: %s\n", cmd, message.c_str());
  return 2;
}

// Runs `body` with a connection to the node and the session to call (after
// login when a key is given); a broken connection or an unreachable node
// prints what kj says and exits 1.
template <class Body>
int with_session(const char* cmd, const ServerArgs& args, Body&& body) {
  int code = 1;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] {
    capnp::EzRpcClient client(args.server);
    auto& ws = client.getWaitScope();
    api::Myriad::Client session = client.getMain<api::Myriad>();
    if (!args.api_key.empty()) {
      auto req = session.loginRequest();
      req.setApiKey(args.api_key);
      auto res = req.send().wait(ws);
      auto r = res.getResult();
      if (r.isError()) {
        code = node_error(cmd, r.getError());
        return;
      }
      session = r.getSession();
    }
    code = body(session, ws);
  })) {
    std::fprintf(stderr, "myriad %s: the node at %s: %s\n", cmd, args.server.c_str(), e->getDescription().cStr());
    return 1;
  }
  return code;
}

// Prints each token's text as it arrives (unless --json) and keeps the ids.
class PrintSink final : public api::TokenSink::Server {
 public:
  explicit PrintSink(bool print) : print_(print) {}
  kj::Promise<void> token(TokenContext context) override {
    auto e = context.getParams().getEvent();
    ids.push_back(e.getTokenId());
    const auto t = e.getText();
    text.append(t.begin(), t.size());
    if (print_ && t.size() > 0) {
      std::fwrite(t.begin(), 1, t.size(), stdout);
      std::fflush(stdout);
    }
    return kj::READY_NOW;
  }
  std::vector<int32_t> ids;
  std::string text;

 private:
  bool print_;
};

std::string read_stdin() {
  std::ostringstream ss;
  ss << std::cin.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

std::string utc_time(int64_t unix_ms) {
  const std::time_t t = std::time_t(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

json adapter_json(api::AdapterInfo::Reader a) {
  json targets = json::array();
  for (auto t : a.getTargetModules()) targets.push_back(text_of(t));
  return {{"tenant", text_of(a.getId().getTenant())},
          {"name", text_of(a.getId().getName())},
          {"version", a.getId().getVersion()},
          {"rank", a.getRank()},
          {"alpha", a.getAlpha()},
          {"target_modules", targets},
          {"sha256", text_of(a.getSha256())},
          {"size_bytes", a.getSizeBytes()},
          {"created_unix_ms", a.getCreatedUnixMs()}};
}

std::string qualified(api::AdapterInfo::Reader a) {
  return text_of(a.getId().getTenant()) + "/" + text_of(a.getId().getName()) + "@" +
         std::to_string(a.getId().getVersion());
}

}  // namespace

int cmd_remote_generate(const RemoteGenerateArgs& a) {
  const char* cmd = a.chat ? "chat" : "complete";
  if (a.max_tokens < 1) return usage_error(cmd, "--max-tokens must be >= 1");
  if (a.prompt && a.ids) return usage_error(cmd, "give at most one of --prompt and --ids");
  std::vector<int32_t> ids;
  if (a.ids) {
    auto parsed = parse_id_list(*a.ids);
    if (!parsed.ok()) return usage_error(cmd, parsed.error().message);
    ids = parsed.value();
  }
  const std::string text = a.prompt ? *a.prompt : (a.ids ? std::string() : read_stdin());
  return with_session(cmd, a, [&](api::Myriad::Client& session, kj::WaitScope& ws) {
    auto req = session.generateRequest();
    auto g = req.initRequest();
    g.setModel(a.model);
    if (a.chat) {
      auto msgs = g.getPrompt().initChat(a.system ? 2 : 1);
      uint32_t i = 0;
      if (a.system) {
        msgs[i].setRole("system");
        msgs[i++].setContent(*a.system);
      }
      msgs[i].setRole("user");
      msgs[i].setContent(text);
    } else if (a.ids) {
      auto list = g.getPrompt().initTokenIds(uint32_t(ids.size()));
      for (size_t i = 0; i < ids.size(); ++i) list.set(uint32_t(i), ids[i]);
    } else {
      g.getPrompt().setText(text);
    }
    g.setMaxTokens(uint32_t(a.max_tokens));
    if (a.temperature || a.top_p || a.top_k || a.seed || a.repetition_penalty || a.presence_penalty ||
        a.frequency_penalty) {
      auto s = g.initSampling();
      if (a.temperature) s.setTemperature(float(*a.temperature));
      if (a.top_p) s.setTopP(float(*a.top_p));
      if (a.top_k) s.setTopK(int32_t(*a.top_k));
      if (a.seed) s.setSeed(uint64_t(*a.seed));
      if (a.repetition_penalty) s.setRepetitionPenalty(float(*a.repetition_penalty));
      if (a.presence_penalty) s.setPresencePenalty(float(*a.presence_penalty));
      if (a.frequency_penalty) s.setFrequencyPenalty(float(*a.frequency_penalty));
    }
    auto stop = g.initStop(uint32_t(a.stop.size()));
    for (size_t i = 0; i < a.stop.size(); ++i) stop.set(uint32_t(i), a.stop[i]);
    g.setIgnoreEos(a.ignore_eos);
    g.setLogprobs(a.logprobs);
    g.setTimeoutMs(uint32_t(a.timeout_ms));
    g.setRequestId(a.request_id);
    auto sink_impl = kj::heap<PrintSink>(!a.json);
    PrintSink& sink = *sink_impl;
    api::TokenSink::Client sink_cap = kj::mv(sink_impl);  // held here: `sink` lives until the result is read
    req.setSink(sink_cap);
    auto res = req.send().wait(ws);
    auto r = res.getResult();
    if (r.isError()) {
      if (!sink.text.empty() && !a.json) std::printf("\n");
      return node_error(cmd, r.getError());
    }
    const std::string tail = text_of(r.getText());
    if (a.json) {
      const json j = {{"ids", sink.ids},
                      {"text", sink.text + tail},
                      {"finish_reason", finish_name(r.getFinishReason())},
                      {"model", text_of(r.getModel())},
                      {"prompt_tokens", r.getPromptTokens()},
                      {"completion_tokens", r.getCompletionTokens()}};
      std::printf("%s\n", j.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
    } else {
      std::printf("%s\n", tail.c_str());
    }
    return 0;
  });
}

int cmd_adapters_add(const AdaptersAddArgs& a) {
  const char* cmd = "adapters add";
  namespace fs = std::filesystem;
  const std::string weights = a.path + "/adapter_model.safetensors", config_path = a.path + "/adapter_config.json";
  std::error_code ec;
  const uint64_t size = fs::file_size(weights, ec);
  if (ec) return usage_error(cmd, "--path " + a.path + ": cannot read adapter_model.safetensors: " + ec.message());
  std::ifstream config_in(config_path, std::ios::binary);
  if (!config_in) return usage_error(cmd, "--path " + a.path + ": cannot read adapter_config.json");
  const std::string config((std::istreambuf_iterator<char>(config_in)), std::istreambuf_iterator<char>());
  std::ifstream in(weights, std::ios::binary);
  if (!in) return usage_error(cmd, "--path " + a.path + ": cannot open adapter_model.safetensors");
  return with_session(cmd, a, [&](api::Myriad::Client& session, kj::WaitScope& ws) {
    auto adapters = session.adaptersRequest().send().getAdapters();
    auto begin = adapters.beginUploadRequest();
    begin.setName(a.name);
    begin.setSizeBytes(size);
    auto started = begin.send().wait(ws);
    auto br = started.getResult();
    if (br.isError()) return node_error(cmd, br.getError());
    api::AdapterUpload::Client upload = br.getUpload();
    // 1 MiB chunks, each waiting for the stream's flow-control window.
    std::vector<char> chunk(size_t(1) << 20);
    while (in) {
      in.read(chunk.data(), std::streamsize(chunk.size()));
      const size_t n = size_t(in.gcount());
      if (n == 0) break;
      auto w = upload.writeRequest();
      w.setChunk(kj::arrayPtr(reinterpret_cast<const capnp::byte*>(chunk.data()), n));
      w.send().wait(ws);
    }
    auto fin = upload.finishRequest();
    fin.setConfigJson(config);
    auto done = fin.send().wait(ws);
    auto r = done.getResult();
    if (r.isError()) return node_error(cmd, r.getError());
    if (a.json)
      std::printf("%s\n", adapter_json(r.getAdapter()).dump().c_str());
    else
      std::printf("published %s (%llu bytes)\n", qualified(r.getAdapter()).c_str(),
                  static_cast<unsigned long long>(r.getAdapter().getSizeBytes()));
    return 0;
  });
}

int cmd_adapters_list(const AdaptersListArgs& a) {
  const char* cmd = "adapters ls";
  return with_session(cmd, a, [&](api::Myriad::Client& session, kj::WaitScope& ws) {
    auto adapters = session.adaptersRequest().send().getAdapters();
    auto res = adapters.listRequest().send().wait(ws);
    auto r = res.getResult();
    if (r.isError()) return node_error(cmd, r.getError());
    if (a.json) {
      json out = json::array();
      for (auto info : r.getAdapters()) out.push_back(adapter_json(info));
      std::printf("%s\n", out.dump().c_str());
      return 0;
    }
    std::printf("%-32s %7s %4s %-40s %12s %s\n", "NAME", "VERSION", "RANK", "TARGETS", "SIZE", "CREATED");
    for (auto info : r.getAdapters()) {
      std::string targets;
      for (auto t : info.getTargetModules()) {
        if (!targets.empty()) targets += ',';
        targets.append(t.begin(), t.size());
      }
      const std::string name = text_of(info.getId().getTenant()) + "/" + text_of(info.getId().getName());
      std::printf("%-32s %7llu %4d %-40s %12llu %s\n", name.c_str(),
                  static_cast<unsigned long long>(info.getId().getVersion()), info.getRank(), targets.c_str(),
                  static_cast<unsigned long long>(info.getSizeBytes()), utc_time(info.getCreatedUnixMs()).c_str());
    }
    return 0;
  });
}

int cmd_adapters_remove(const AdaptersRemoveArgs& a) {
  const char* cmd = "adapters rm";
  return with_session(cmd, a, [&](api::Myriad::Client& session, kj::WaitScope& ws) {
    auto adapters = session.adaptersRequest().send().getAdapters();
    auto req = adapters.deleteRequest();
    req.setName(a.name);
    req.setVersion(0);  // every version, or the one "@N" pins
    auto res = req.send().wait(ws);
    auto r = res.getResult();
    if (r.isError()) return node_error(cmd, r.getError());
    for (auto info : r.getAdapters()) std::printf("deleted %s\n", qualified(info).c_str());
    return 0;
  });
}

int cmd_cluster_list(const ClusterListArgs& a) {
  const char* cmd = "cluster ls";
  return with_session(cmd, a, [&](api::Myriad::Client& session, kj::WaitScope& ws) {
    auto res = session.statsRequest().send().wait(ws);
    auto workers = res.getStats().getWorkers();
    auto names = [](capnp::List<capnp::Text>::Reader list) {
      std::vector<std::string> out;
      for (auto t : list) out.push_back(text_of(t));
      return out;
    };
    if (a.json) {
      json out = json::array();
      for (auto w : workers)
        out.push_back({{"worker", text_of(w.getWorker())}, {"device", text_of(w.getDevice())}, {"up", w.getUp()},
                       {"draining", w.getDraining()}, {"queued", w.getQueued()}, {"running", w.getRunning()},
                       {"pending_tokens", w.getPendingTokens()}, {"slots", w.getTotalSlots()},
                       {"step_ms", w.getStepMs()}, {"report_age_ms", w.getReportAgeMs()},
                       {"resident", names(w.getResident())}, {"host_cached", names(w.getHostCached())}});
      std::printf("%s\n", out.dump().c_str());
      return 0;
    }
    std::printf("%-24s %-9s %6s %7s %9s %5s %8s %9s  %s\n", "WORKER", "STATE", "QUEUED", "RUNNING", "PENDING",
                "SLOTS", "STEP_MS", "HEARD_MS", "RESIDENT (host-cached)");
    for (auto w : workers) {
      const char* state = !w.getUp() ? "lost" : w.getDraining() ? "draining" : "up";
      std::string held;
      for (const std::string& n : names(w.getResident())) held += (held.empty() ? "" : ",") + n;
      std::string cached;
      for (const std::string& n : names(w.getHostCached())) cached += (cached.empty() ? "" : ",") + n;
      std::printf("%-24s %-9s %6u %7u %9llu %5u %8.2f %9.0f  %s%s\n", text_of(w.getWorker()).c_str(), state,
                  w.getQueued(), w.getRunning(), static_cast<unsigned long long>(w.getPendingTokens()),
                  w.getTotalSlots(), double(w.getStepMs()), w.getReportAgeMs(), held.empty() ? "-" : held.c_str(),
                  cached.empty() ? "" : (" (" + cached + ")").c_str());
    }
    return 0;
  });
}

namespace {

// A FineTuning call's answer: its JSON, or the node's error printed (nullopt).
std::optional<json> json_answer(const char* cmd, api::JsonResult::Reader r, int& code) {
  if (r.isError()) {
    code = node_error(cmd, r.getError());
    return std::nullopt;
  }
  json j = json::parse(text_of(r.getJson()), nullptr, false);
  if (j.is_discarded()) {
    std::fprintf(stderr, "myriad %s: the node answered something that is not JSON\n", cmd);
    code = 1;
    return std::nullopt;
  }
  return j;
}

// Polls a job until it ends, drawing its progress on stderr (a bar on a
// terminal, a line per change otherwise). Exit 0 when it succeeded.
int follow_job(const char* cmd, api::FineTuning::Client& ft, kj::WaitScope& ws, const std::string& id) {
  const bool tty = ::isatty(STDERR_FILENO) != 0;
  int64_t shown = -1;
  for (;;) {
    auto get = ft.getJobRequest();
    get.setId(id);
    auto res = get.send().wait(ws);
    int code = 0;
    auto job = json_answer(cmd, res.getResult(), code);
    if (!job) return code;
    const json& m = (*job)["myriad"];
    const int64_t step = m.value("step", int64_t(0)), total = std::max<int64_t>(1, m.value("total_steps", int64_t(1)));
    const std::string status = job->value("status", "");
    if (step != shown) {
      shown = step;
      double tps = 0, eta = 0;
      auto ev = ft.eventsRequest();
      ev.setId(id);
      ev.setLimit(10);
      auto er = ev.send().wait(ws);
      int ecode = 0;
      if (auto events = json_answer(cmd, er.getResult(), ecode))
        for (const json& e : (*events)["data"])
          if (e.value("type", "") == "metrics") {
            tps = e["data"].value("tokens_per_second", 0.0);
            eta = e["data"].value("eta_seconds", 0.0);
            break;
          }
      const double loss = m["train_loss"].is_number() ? m["train_loss"].get<double>() : 0.0;
      if (tty) {
        const int width = 30, filled = int(width * std::min(step, total) / total);
        std::fprintf(stderr, "\r%s [%s%s] step %lld/%lld  loss %.4f  %.0f tok/s  ETA %s ", id.c_str(),
                     std::string(size_t(filled), '#').c_str(), std::string(size_t(width - filled), '.').c_str(),
                     (long long)step, (long long)total, loss, tps, clock_text(eta).c_str());
      } else {
        std::fprintf(stderr, "%s step %lld/%lld loss %.4f tokens_per_s %.0f eta %s\n", id.c_str(), (long long)step,
                     (long long)total, loss, tps, clock_text(eta).c_str());
      }
      std::fflush(stderr);
    }
    if (status != "queued" && status != "running") {
      if (tty) std::fprintf(stderr, "\n");
      std::printf("%s %s%s\n", id.c_str(), status.c_str(),
                  (*job)["fine_tuned_model"].is_string()
                      ? (": " + (*job)["fine_tuned_model"].get<std::string>()).c_str()
                      : "");
      return status == "succeeded" ? 0 : 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
}

}  // namespace

int cmd_jobs_create(const JobsCreateArgs& a) {
  const char* cmd = "jobs create";
  auto read = [](const std::string& path) -> std::optional<std::string> {
    std::ifstream in(path, std::ios::binary);
    if (!in) return std::nullopt;
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  const auto train = read(a.file);
  if (!train) return usage_error(cmd, "--file " + a.file + ": cannot read it");
  std::optional<std::string> validation;
  if (a.validation_file) {
    validation = read(*a.validation_file);
    if (!validation) return usage_error(cmd, "--validation-file " + *a.validation_file + ": cannot read it");
  }
  return with_session(cmd, a, [&](api::Myriad::Client& session, kj::WaitScope& ws) {
    auto ft = session.fineTuningRequest().send().getFineTuning();
    int code = 0;
    auto upload = [&](const std::string& path, const std::string& bytes) -> std::optional<std::string> {
      auto req = ft.uploadFileRequest();
      req.setFilename(std::filesystem::path(path).filename().string());
      req.setContent(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size()));
      auto res = req.send().wait(ws);
      auto f = json_answer(cmd, res.getResult(), code);
      if (!f) return std::nullopt;
      return (*f)["id"].get<std::string>();
    };
    const auto file_id = upload(a.file, *train);
    if (!file_id) return code;
    json body = {{"model", a.model}, {"training_file", *file_id}};
    if (validation) {
      const auto vid = upload(*a.validation_file, *validation);
      if (!vid) return code;
      body["validation_file"] = *vid;
    }
    if (!a.suffix.empty()) body["suffix"] = a.suffix;
    if (a.seed) body["seed"] = *a.seed;
    json hp = json::object();
    if (a.epochs) hp["n_epochs"] = *a.epochs;
    if (a.steps) hp["steps"] = *a.steps;
    if (a.lr) hp["learning_rate"] = *a.lr;
    if (a.rank) hp["rank"] = *a.rank;
    if (a.alpha) hp["alpha"] = *a.alpha;
    if (a.batch_tokens) hp["batch_tokens"] = *a.batch_tokens;
    if (!a.targets.empty()) {
      json t = json::array();
      std::stringstream ss(a.targets);
      std::string name;
      while (std::getline(ss, name, ','))
        if (!name.empty()) t.push_back(name);
      hp["targets"] = t;
    }
    body["hyperparameters"] = hp;
    auto req = ft.createJobRequest();
    req.setRequestJson(body.dump());
    auto res = req.send().wait(ws);
    auto job = json_answer(cmd, res.getResult(), code);
    if (!job) return code;
    if (a.json) {
      std::printf("%s\n", job->dump().c_str());
    } else {
      std::printf("%s %s: %lld steps on %s (%lld examples), adapter %s\n", (*job)["id"].get<std::string>().c_str(),
                  (*job)["status"].get<std::string>().c_str(), (long long)(*job)["myriad"]["total_steps"].get<int64_t>(),
                  file_id->c_str(), (long long)(*job)["myriad"]["examples"].get<int64_t>(),
                  (*job)["myriad"]["adapter"].get<std::string>().c_str());
    }
    std::fflush(stdout);
    return a.follow ? follow_job(cmd, ft, ws, (*job)["id"].get<std::string>()) : 0;
  });
}

int cmd_jobs_list(const JobsListArgs& a) {
  const char* cmd = "jobs ls";
  return with_session(cmd, a, [&](api::Myriad::Client& session, kj::WaitScope& ws) {
    auto ft = session.fineTuningRequest().send().getFineTuning();
    auto req = ft.listJobsRequest();
    req.setLimit(uint32_t(std::clamp<int64_t>(a.limit, 1, 10000)));
    auto res = req.send().wait(ws);
    int code = 0;
    auto list = json_answer(cmd, res.getResult(), code);
    if (!list) return code;
    if (a.json) {
      std::printf("%s\n", (*list)["data"].dump().c_str());
      return 0;
    }
    std::printf("%-32s %-10s %-28s %11s %8s %8s %s\n", "ID", "STATUS", "ADAPTER", "STEP", "LOSS", "VERSIONS", "CREATED");
    for (const json& j : (*list)["data"]) {
      const json& m = j["myriad"];
      const std::string step = std::to_string(m.value("step", int64_t(0))) + "/" + std::to_string(m.value("total_steps", int64_t(0)));
      char loss[32] = "-";
      if (m["train_loss"].is_number()) std::snprintf(loss, sizeof loss, "%.4f", m["train_loss"].get<double>());
      std::printf("%-32s %-10s %-28s %11s %8s %8zu %s\n", j["id"].get<std::string>().c_str(),
                  j["status"].get<std::string>().c_str(), m["adapter"].get<std::string>().c_str(), step.c_str(), loss,
                  m["versions"].size(), utc_time(j["created_at"].get<int64_t>() * 1000).c_str());
    }
    return 0;
  });
}

int cmd_jobs_get(const JobArgs& a) {
  const char* cmd = "jobs get";
  return with_session(cmd, a, [&](api::Myriad::Client& session, kj::WaitScope& ws) {
    auto ft = session.fineTuningRequest().send().getFineTuning();
    if (a.follow) return follow_job(cmd, ft, ws, a.id);
    auto req = ft.getJobRequest();
    req.setId(a.id);
    auto res = req.send().wait(ws);
    int code = 0;
    auto job = json_answer(cmd, res.getResult(), code);
    if (!job) return code;
    std::printf("%s\n", job->dump(a.json ? -1 : 2).c_str());
    return 0;
  });
}

int cmd_jobs_cancel(const JobArgs& a) {
  const char* cmd = "jobs cancel";
  return with_session(cmd, a, [&](api::Myriad::Client& session, kj::WaitScope& ws) {
    auto ft = session.fineTuningRequest().send().getFineTuning();
    auto req = ft.cancelJobRequest();
    req.setId(a.id);
    auto res = req.send().wait(ws);
    int code = 0;
    auto job = json_answer(cmd, res.getResult(), code);
    if (!job) return code;
    std::printf("%s %s at step %lld\n", a.id.c_str(), (*job)["status"].get<std::string>().c_str(),
                (long long)(*job)["myriad"]["step"].get<int64_t>());
    return 0;
  });
}

int cmd_jobs_events(const JobArgs& a) {
  const char* cmd = "jobs events";
  return with_session(cmd, a, [&](api::Myriad::Client& session, kj::WaitScope& ws) {
    auto ft = session.fineTuningRequest().send().getFineTuning();
    auto req = ft.eventsRequest();
    req.setId(a.id);
    req.setLimit(uint32_t(std::clamp<int64_t>(a.limit, 1, 10000)));
    auto res = req.send().wait(ws);
    int code = 0;
    auto events = json_answer(cmd, res.getResult(), code);
    if (!events) return code;
    const json& data = (*events)["data"];
    if (a.json) {
      std::printf("%s\n", data.dump().c_str());
    } else {
      for (auto it = data.rbegin(); it != data.rend(); ++it)  // oldest first, as a log reads
        std::printf("%s %-5s %s\n", utc_time((*it)["created_at"].get<int64_t>() * 1000).c_str(),
                    (*it)["level"].get<std::string>().c_str(), (*it)["message"].get<std::string>().c_str());
    }
    std::fflush(stdout);
    return a.follow ? follow_job(cmd, ft, ws, a.id) : 0;
  });
}

}  // namespace myriad::cli

#endif  // MYRIAD_CLI_FULL
