#include "http_server.h"

#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <sys/socket.h>

#include <cerrno>
#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <variant>

#include "nodes/openai/api_error.h"
#include "nodes/openai/requests.h"
#include "nodes/openai/responses.h"
#include "api_error_of.h"
#include "completion_choices.h"
#include "console_api.h"
#include "console_assets.h"
#include "multipart.h"
#include "prometheus.h"
#include "training_runs.h"
#include "runtime/log.h"
#include "runtime/moe/router.h"

namespace myriad::node {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using json = nlohmann::json;
using Request = http::request<http::string_body>;

namespace {

// Whether events may still be posted to the server's io_context: the
// engine's callbacks check it, so none reaches a stopped one.
struct Gate {
  std::mutex mu;
  bool open = true;
  net::io_context* io = nullptr;
};

// One request's events (of all its choices), handed from the worker thread to its session.
struct Relay {
  explicit Relay(net::any_io_executor ex) : timer(ex) {}
  std::deque<ChoiceEvent> events;
  net::steady_timer timer;  // cancelled when an event arrives, or the client hangs up
  bool client_gone = false;  // HangupWatch saw the connection close
};

// Watches a request's connection while its answer is pending, so a client
// that hangs up frees its choices' places in the batch at once rather than
// when the answer is written (a non-streamed one) or at its next token (a
// streamed one still queued). Closed (EOF) or reset: relay.client_gone, and
// the session wakes. Bytes of a pipelined next request end the watch,
// unread. Runs on the session's (only) io thread; the destructor disarms
// it before the socket can go.
class HangupWatch {
 public:
  HangupWatch(tcp::socket& socket, std::shared_ptr<Relay> relay)
      : socket_(socket), state_(std::make_shared<State>(State{std::move(relay)})) {
    // Looked at once before waiting: the reactor is edge-triggered, and a
    // close that came with the request's bytes raised no edge of its own.
    check(socket_, state_);
  }
  ~HangupWatch() {
    state_->armed = false;
    beast::error_code ignored;
    socket_.cancel(ignored);
  }
  HangupWatch(const HangupWatch&) = delete;
  HangupWatch& operator=(const HangupWatch&) = delete;

 private:
  struct State {
    std::shared_ptr<Relay> relay;
    bool armed = true;
  };
  // Closed, reset, still open (then waits for the next readiness) or a
  // pipelined request (then stops watching: the session reads it next).
  static void check(tcp::socket& socket, const std::shared_ptr<State>& state) {
    char byte = 0;
    const ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) return;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return arm(socket, state);
    state->relay->client_gone = true;
    state->relay->timer.cancel();
  }
  // The handler touches the socket only while armed, i.e. while the
  // session, and so the socket, lives.
  static void arm(tcp::socket& socket, std::shared_ptr<State> state) {
    socket.async_wait(tcp::socket::wait_read, [&socket, state](const beast::error_code& ec) {
      if (!ec && state->armed) check(socket, state);
    });
  }

  tcp::socket& socket_;
  std::shared_ptr<State> state_;
};

std::string percent_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      const std::string hex(s.substr(i + 1, 2));
      char* end = nullptr;
      const long v = std::strtol(hex.c_str(), &end, 16);
      if (end == hex.c_str() + 2) {
        out += char(v);
        i += 2;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

// A mixture as /v1/mixtures and /v1/models show it.
json mixture_json(const MixtureRecord& m) {
  json experts = json::array();
  for (const AdapterId& e : m.experts) experts.push_back(e.to_string());
  return {{"id", m.qualified_name()}, {"object", "mixture"}, {"created", m.created_unix_ms / 1000},
          {"owned_by", m.tenant}, {"experts", experts}};
}

using Response = http::response<http::string_body>;

// Responses are built by plain functions and sent by one coroutine: GCC 12
// miscompiles string literals inside co_await expressions ("array used as
// initializer"), so no co_await line carries one.
Response make_response(const Request& req, int status, std::string body, std::string_view content_type = "application/json",
                       int retry_after_s = 0) {
  Response res{http::status(unsigned(status)), req.version()};
  res.set(http::field::server, "myriad");
  res.set(http::field::content_type, beast::string_view(content_type.data(), content_type.size()));
  if (retry_after_s > 0) res.set(http::field::retry_after, std::to_string(retry_after_s));
  res.keep_alive(req.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

Response error_response(const Request& req, const openai::ApiError& e, int retry_after_s = 0) {
  return make_response(req, e.status, openai::to_json(e), "application/json", retry_after_s);
}

// "a=1&b=x" -> its fields, percent-decoded.
std::map<std::string, std::string> query_fields(std::string_view target) {
  std::map<std::string, std::string> out;
  const size_t q = target.find('?');
  if (q == std::string_view::npos) return out;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    const size_t amp = rest.find('&');
    const std::string_view kv = rest.substr(0, amp);
    const size_t eq = kv.find('=');
    if (eq != std::string_view::npos) out[percent_decode(kv.substr(0, eq))] = percent_decode(kv.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    rest = rest.substr(amp + 1);
  }
  return out;
}

// Query field `key` as an integer in [lo, hi] into `out` (left as it is when
// the field is absent); the 400 naming the field and the range when it is
// not one.
std::optional<openai::ApiError> query_int(const std::map<std::string, std::string>& query, const char* key,
                                          int64_t lo, int64_t hi, int64_t& out) {
  const auto it = query.find(key);
  if (it == query.end()) return std::nullopt;
  char* end = nullptr;
  const long long v = std::strtoll(it->second.c_str(), &end, 10);
  if (it->second.empty() || *end != '\0' || v < lo || v > hi)
    return openai::invalid_request(std::string(key) + ": expected an integer in [" + std::to_string(lo) + ", " +
                                       std::to_string(hi) + "]",
                                   key, "invalid_value");
  out = v;
  return std::nullopt;
}

// GET / and /console/<file>: the web console's static files.
Response console_file_response(const Request& req, std::optional<ConsoleFile> file, std::string_view path) {
  if (!file) return error_response(req, openai::not_found_route("GET", path));
  Response res = make_response(req, 200, std::move(file->body), file->content_type);
  // The pages change with the binary: a browser checks back every time.
  res.set(http::field::cache_control, "no-cache");
  return res;
}

// GET /v1/adapters?limit=&after=&q= (a page of the caller's adapters) and
// GET /v1/adapters/{name} (one), with residency and request figures (console_api.h).
Response adapter_listing_response(NodeService& service, const Request& req, const Caller& caller,
                                  std::string_view path) {
  constexpr std::string_view prefix = "/v1/adapters/";
  if (path.rfind(prefix, 0) == 0) {
    const std::string name = percent_decode(path.substr(prefix.size()));
    auto entry = adapter_entry(service, caller, name);
    if (!entry.ok())
      return error_response(req, entry.error().code == ErrorCode::kNotFound ? openai::model_not_found(name)
                                                                            : api_error_of(entry.error()));
    return make_response(req, 200, entry.value().dump());
  }
  const auto query = query_fields(std::string_view(req.target().data(), req.target().size()));
  AdapterPageQuery page;
  int64_t limit = int64_t(page.limit);
  if (auto bad = query_int(query, "limit", 1, 1000, limit)) return error_response(req, *bad);
  page.limit = size_t(limit);
  if (auto it = query.find("after"); it != query.end()) page.after = it->second;
  if (auto it = query.find("q"); it != query.end()) page.contains = it->second;
  auto listing = adapter_page(service, caller, page);
  if (!listing.ok()) return error_response(req, api_error_of(listing.error()));
  return make_response(req, 200, listing.value().dump());
}

// "<root>/ID[/TAIL]": ID percent-decoded and TAIL; nullopt when `path` is not under root.
std::optional<std::pair<std::string, std::string>> id_and_tail(std::string_view path, std::string_view root) {
  if (path.size() <= root.size() || path.substr(0, root.size()) != root || path[root.size()] != '/')
    return std::nullopt;
  std::string_view rest = path.substr(root.size() + 1);
  std::string_view tail;
  if (const size_t slash = rest.find('/'); slash != std::string_view::npos) {
    tail = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
  }
  return std::make_pair(percent_decode(rest), std::string(tail));
}

// /v1/files and /v1/fine_tuning/jobs (fine_tuning.h), answered in one plain
// function (no coroutine: see above).
Response fine_tuning_response(NodeService& service, const Request& req, const Caller& caller, std::string_view path) {
  using json = nlohmann::json;
  const auto method = req.method();
  FineTuning* ft = service.fine_tuning();
  if (!ft) {
    openai::ApiError e = openai::invalid_request(service.fine_tuning_unavailable(), "", "unsupported_value");
    return error_response(req, e);
  }
  const auto query = query_fields(std::string_view(req.target().data(), req.target().size()));
  auto field = [&](const char* key) { auto it = query.find(key); return it == query.end() ? std::string() : it->second; };
  int64_t limit = 20;
  if (!field("limit").empty())  // an empty limit= is the default
    if (auto bad = query_int(query, "limit", 1, 10000, limit)) return error_response(req, *bad);
  auto answer = [&](const Result<json>& r) {
    if (!r.ok()) return error_response(req, api_error_of(r.error()));
    return make_response(req, 200, r.value().dump());
  };
  // Files.
  if (path == "/v1/files" && method == http::verb::post) {
    auto ct = req.find(http::field::content_type);
    const std::string_view content_type =
        ct == req.end() ? std::string_view() : std::string_view(ct->value().data(), ct->value().size());
    if (content_type.rfind("multipart/", 0) != 0)
      return error_response(req, openai::invalid_request("expected a multipart/form-data upload with 'file' and 'purpose'", "file"));
    auto parts = parse_multipart(content_type, req.body());
    if (!parts.ok()) return error_response(req, openai::invalid_request(parts.error().message, "file"));
    const FormPart* file = nullptr;
    std::string purpose;
    for (const FormPart& p : parts.value()) {
      if (p.name == "file") file = &p;
      if (p.name == "purpose") purpose = std::string(p.data);
    }
    if (!file) return error_response(req, openai::invalid_request("a 'file' part is required", "file", "missing_required_parameter"));
    if (purpose.empty()) return error_response(req, openai::invalid_request("a 'purpose' field is required", "purpose", "missing_required_parameter"));
    auto rec = ft->add_file(caller, std::string(file->filename), purpose, file->data);
    if (!rec.ok()) return error_response(req, api_error_of(rec.error()));
    auto got = ft->get_file(caller, rec.value().id);
    return answer(got.ok() ? Result<json>(fine_tuning_file_json(got.value())) : Result<json>(got.error()));
  }
  if (path == "/v1/files" && method == http::verb::get) {
    auto list = ft->list_files(caller);
    if (!list.ok()) return error_response(req, api_error_of(list.error()));
    json data = json::array();
    for (const auto& f : list.value()) data.push_back(fine_tuning_file_json(f));
    return make_response(req, 200, json{{"object", "list"}, {"data", data}, {"has_more", false}}.dump());
  }
  constexpr std::string_view files = "/v1/files/";
  if (path.rfind(files, 0) == 0) {
    std::string id = percent_decode(path.substr(files.size()));
    const bool content = id.size() > 8 && id.compare(id.size() - 8, 8, "/content") == 0;
    if (content) id.resize(id.size() - 8);
    if (method == http::verb::get && content) {
      auto text = ft->file_content(caller, id);
      if (!text.ok()) return error_response(req, api_error_of(text.error()));
      return make_response(req, 200, std::move(text.value()), "application/octet-stream");
    }
    if (method == http::verb::get) {
      auto f = ft->get_file(caller, id);
      return answer(f.ok() ? Result<json>(fine_tuning_file_json(f.value())) : Result<json>(f.error()));
    }
    if (method == http::verb::delete_) {
      if (Status st = ft->delete_file(caller, id); !st.ok()) return error_response(req, api_error_of(st.error()));
      return make_response(req, 200, json{{"id", id}, {"object", "file"}, {"deleted", true}}.dump());
    }
  }
  // Jobs.
  constexpr std::string_view jobs = "/v1/fine_tuning/jobs";
  if (path == jobs && method == http::verb::post) {
    const json body = json::parse(req.body(), nullptr, false);
    if (body.is_discarded() || !body.is_object())
      return error_response(req, openai::invalid_request("the body must be a JSON object", "", "invalid_json"));
    return answer(ft->create_job(caller, body));
  }
  if (path == jobs && method == http::verb::get) return answer(ft->list_jobs(caller, field("after"), limit));
  if (auto sub = id_and_tail(path, jobs)) {
    const auto& [id, tail] = *sub;
    if (tail.empty() && method == http::verb::get) return answer(ft->get_job(caller, id));
    if (tail == "cancel" && method == http::verb::post) return answer(ft->cancel_job(caller, id));
    if (tail == "events" && method == http::verb::get) return answer(ft->job_events(caller, id, field("after"), limit));
    if (tail == "checkpoints" && method == http::verb::get) return answer(ft->job_checkpoints(caller, id));
    if ((tail == "loss.csv" || tail == "loss.svg") && method == http::verb::get) {
      const std::string format = tail.substr(5);
      auto curve = ft->loss_curve(caller, id, format);
      if (!curve.ok()) return error_response(req, api_error_of(curve.error()));
      return make_response(req, 200, std::move(curve.value()), format == "csv" ? "text/csv" : "image/svg+xml");
    }
  }
  return error_response(req, openai::not_found_route(std::string(http::to_string(method)), path));
}

// POST /v1/mixtures with a "training_file", and /v1/mixture_builds
// (mixture_builds.h), answered in one plain function (no coroutine).
Response mixture_build_response(NodeService& service, const Request& req, const Caller& caller, std::string_view path) {
  using json = nlohmann::json;
  const auto method = req.method();
  MixtureBuilds* builds = service.mixture_builds();
  if (!builds) {
    const std::string why = service.fine_tuning_unavailable().empty()
                                ? std::string("building a mixture needs fine-tuning, unavailable on this node")
                                : "building a mixture trains its experts, and " + service.fine_tuning_unavailable();
    return error_response(req, openai::invalid_request(why, "", "unsupported_value"));
  }
  auto answer = [&](const Result<json>& r) {
    if (!r.ok()) return error_response(req, api_error_of(r.error()));
    return make_response(req, 200, r.value().dump(-1, ' ', false, json::error_handler_t::replace));
  };
  constexpr std::string_view root = "/v1/mixture_builds";
  if (path == "/v1/mixtures" || (path == root && method == http::verb::post)) {
    const json body = json::parse(req.body(), nullptr, false);
    if (body.is_discarded() || !body.is_object())
      return error_response(req, openai::invalid_request("the body must be a JSON object", "", "invalid_json"));
    return answer(builds->create(caller, body));
  }
  if (path == root && method == http::verb::get) return answer(builds->list(caller));
  if (auto sub = id_and_tail(path, root)) {
    const auto& [id, tail] = *sub;
    if (tail.empty() && method == http::verb::get) return answer(builds->get(caller, id));
    if (tail == "cancel" && method == http::verb::post) return answer(builds->cancel(caller, id));
    if (tail == "assignments" && method == http::verb::get) return answer(builds->assignments(caller, id));
  }
  return error_response(req, openai::not_found_route(std::string(http::to_string(method)), path));
}

// The saved states of training runs (FineTuning::save_run_state): GET
// /v1/training_run_checkpoints lists the caller's, DELETE .../{id} removes one.
Response run_checkpoints_response(NodeService& service, const Request& req, const Caller& caller,
                                  std::string_view path) {
  FineTuning* ft = service.fine_tuning();
  if (!ft) return error_response(req, openai::invalid_request(service.fine_tuning_unavailable(), "", "unsupported_value"));
  constexpr std::string_view root = "/v1/training_run_checkpoints";
  const auto method = req.method();
  if (path == root && method == http::verb::get) return make_response(req, 200, ft->list_run_checkpoints(caller).dump());
  if (auto sub = id_and_tail(path, root); sub && sub->second.empty() && method == http::verb::delete_) {
    auto r = ft->delete_run_checkpoint(caller, sub->first);
    if (!r.ok()) return error_response(req, api_error_of(r.error()));
    return make_response(req, 200, r.value().dump());
  }
  return error_response(req, openai::not_found_route(std::string(http::to_string(method)), path));
}

net::awaitable<bool> send(beast::tcp_stream& stream, Response res) {
  beast::error_code ec;
  co_await http::async_write(stream, res, net::redirect_error(net::use_awaitable, ec));
  co_return !ec;
}

// Waits until the worker has posted an event for the request. Returns
// nothing and the caller pops the event: GCC 12 destroys a non-trivial value
// returned through co_await in a loop twice (it crashed here), and it
// mishandles lambda coroutines, so this is a plain function.
net::awaitable<void> wait_for_event(std::shared_ptr<Relay> relay) {
  while (relay->events.empty() && !relay->client_gone) {
    relay->timer.expires_at(net::steady_timer::time_point::max());
    beast::error_code ec;
    co_await relay->timer.async_wait(net::redirect_error(net::use_awaitable, ec));
  }
}

// An answer made on another thread (the worker's, for a training run's
// call), handed to the io thread: the session waits on the timer, which the
// answer's arrival cancels.
struct RunAnswer {
  explicit RunAnswer(net::any_io_executor ex) : timer(ex) {}
  net::steady_timer timer;
  std::optional<Result<json>> result;          // set on the io thread
  std::shared_ptr<const LoraWeights> weights;  // publish's snapshot
  int64_t step = 0;
  std::shared_ptr<const TrainingRunState> state;  // save_state's copy
};

// Hands `result` (and a snapshot) to the io thread; dropped once the server closes.
void deliver(const std::shared_ptr<Gate>& g, const std::shared_ptr<RunAnswer>& a, Result<json> result,
             std::shared_ptr<const LoraWeights> weights = nullptr, int64_t step = 0,
             std::shared_ptr<const TrainingRunState> state = nullptr) {
  std::lock_guard lock(g->mu);
  if (!g->open) return;
  net::post(*g->io, [a, result = std::move(result), weights = std::move(weights), step,
                     state = std::move(state)]() mutable {
    a->result = std::move(result);
    a->weights = std::move(weights);
    a->step = step;
    a->state = std::move(state);
    a->timer.cancel();
  });
}

// A plain function, not a lambda, for GCC 12's coroutines (wait_for_event says why).
net::awaitable<void> wait_for_answer(std::shared_ptr<RunAnswer> a) {
  while (!a->result) {
    a->timer.expires_at(net::steady_timer::time_point::max());
    beast::error_code ec;
    co_await a->timer.async_wait(net::redirect_error(net::use_awaitable, ec));
  }
}


// One server-sent event as one HTTP chunk; false once the client is gone.
net::awaitable<bool> send_chunk(beast::tcp_stream& stream, std::string data) {
  beast::error_code ec;
  co_await net::async_write(stream, http::make_chunk(net::buffer(data)), net::redirect_error(net::use_awaitable, ec));
  co_return !ec;
}

// The experts a request routed in its prefill chose, heaviest first, from
// its events' weights over every expert of the mixture.
std::vector<std::pair<std::string, double>> chosen_experts(const std::vector<RoutedExpert>& all,
                                                           const std::vector<float>& weights) {
  std::vector<std::pair<std::string, double>> out;
  for (const moe::ExpertChoice& c : moe::choices_of_weights(std::span(weights).first(std::min(weights.size(), all.size()))))
    out.push_back({all[size_t(c.expert)].name, c.weight});
  return out;
}

// How a mixture request's experts are named on the response: routed before
// submission (fixed), or in the prefill (from its events' weights).
struct ExpertNames {
  std::vector<RoutedExpert> experts;
  bool routed_in_prefill = false;
};

// Takes the events queued so far into `choices`; true once all choices have
// finished or one failed. A plain function: the coroutine that waits keeps
// no locals across its awaits (GCC 12 miscompiles `continue` and `break`
// past locals in coroutine loops).
bool take_events(Relay& relay, CompletionChoices& choices, const ExpertNames& names) {
  bool over = false;
  while (!relay.events.empty() && !over) {
    const ChoiceEvent& ev = relay.events.front();
    if (names.routed_in_prefill && !ev.expert_weights.empty())
      choices.meta().experts = chosen_experts(names.experts, ev.expert_weights);
    over = choices.add(ev);
    relay.events.pop_front();
  }
  return over;
}

// The SSE chunks of the events queued so far; `done` after the last.
std::vector<std::string> stream_events(Relay& relay, CompletionChoices& choices, const ExpertNames& names,
                                       bool& done) {
  std::vector<std::string> out;
  while (!relay.events.empty() && !done) {
    const ChoiceEvent& ev = relay.events.front();
    if (names.routed_in_prefill && !ev.expert_weights.empty())
      choices.meta().experts = chosen_experts(names.experts, ev.expert_weights);
    for (std::string& c : choices.chunks(ev, done)) out.push_back(std::move(c));
    relay.events.pop_front();
  }
  return out;
}

// A generation request parsed, checked against the model and admitted:
// what generate() submits, one engine request per choice.
struct PreparedGeneration {
  openai::Endpoint endpoint = openai::Endpoint::kCompletions;
  std::string model;  // as the client wrote it
  ModelRef ref;
  openai::GenerationOptions options;
  uint32_t max_tokens = 0;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::optional<std::string>> route_texts;  // per prompt: what a mixture routes on
  bool echo = false;
  std::vector<EchoedPrompt> echoed;  // per prompt, with echo
  std::optional<TenantLimits::Ticket> ticket;
};

}  // namespace

using WallClock = std::chrono::steady_clock;

struct HttpServer::Impl {
  Impl(NodeService& s, const Tenants& t, const HttpOptions& o)
      : service(s), tenants(t), opts(o), assets(o.console_dir) {
    if (!opts.limits) opts.limits = TenantLimits::create({});
    gate->io = &io;
  }
  NodeService& service;
  const Tenants& tenants;
  HttpOptions opts;
  net::io_context io{1};
  tcp::acceptor acceptor{io};
  std::shared_ptr<Gate> gate = std::make_shared<Gate>();
  std::thread thread;
  // Touched on the io thread only.
  std::set<beast::tcp_stream*> open_streams;
  std::mt19937_64 seeds{std::random_device{}()};
  uint16_t bound_port = 0;
  ConsoleAssets assets;
  // The node's live view, shared by every console stream (io thread only):
  // taken at most every kLiveMinAge, however many pages watch.
  json live_cache;
  std::chrono::steady_clock::time_point live_taken{};
  TrainingRuns training_runs;  // those opened over HTTP (the RPC API's are its connections')

  net::awaitable<void> listen();
  net::awaitable<void> session(tcp::socket socket);
  net::awaitable<bool> handle(beast::tcp_stream& stream, Request& req);
  net::awaitable<bool> generate(beast::tcp_stream& stream, const Request& req, const Caller& caller,
                                openai::Endpoint endpoint);
  std::variant<PreparedGeneration, Response> prepare_generation(const Request& req, const Caller& caller,
                                                                openai::Endpoint endpoint);
  // Submits every choice, events to `relay`; their ids, or the error answer
  // (the choices submitted before it are cancelled).
  std::variant<std::vector<RequestId>, Response> submit_choices(const Request& req, PreparedGeneration& g,
                                                                const std::shared_ptr<Relay>& relay,
                                                                ExpertNames& names);
  net::awaitable<bool> models(beast::tcp_stream& stream, const Request& req, const Caller& caller);
  net::awaitable<bool> mixtures(beast::tcp_stream& stream, const Request& req, const Caller& caller,
                                std::string_view path);
  net::awaitable<bool> adapters(beast::tcp_stream& stream, const Request& req, const Caller& caller,
                                std::string_view path);
  net::awaitable<bool> console_live(beast::tcp_stream& stream, const Request& req, const Caller& caller);
  net::awaitable<bool> training_run_call(beast::tcp_stream& stream, const Request& req, const Caller& caller,
                                         std::string_view path);
  const json& live_view();
};

net::awaitable<void> HttpServer::Impl::listen() {
  for (;;) {
    beast::error_code ec;
    tcp::socket socket = co_await acceptor.async_accept(net::redirect_error(net::use_awaitable, ec));
    if (ec) {
      if (!acceptor.is_open()) co_return;
      continue;
    }
    net::co_spawn(io, session(std::move(socket)), net::detached);
  }
}

net::awaitable<void> HttpServer::Impl::session(tcp::socket socket) {
  // Each token goes out as its own small write: without NODELAY, Nagle holds
  // one back until the client's (delayed, up to 40 ms) ACK of the last.
  beast::error_code nodelay_ec;
  socket.set_option(tcp::no_delay(true), nodelay_ec);
  beast::tcp_stream stream(std::move(socket));
  open_streams.insert(&stream);
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(opts.max_body_bytes);
    stream.expires_after(std::chrono::seconds(300));
    beast::error_code ec;
    co_await http::async_read(stream, buffer, parser, net::redirect_error(net::use_awaitable, ec));
    if (ec == http::error::body_limit) {
      Request head;
      head.version(11);
      {
      auto res_ = error_response(head, openai::body_too_large(size_t(parser.content_length().value_or(0)),
                                                                     opts.max_body_bytes));
      (void)co_await send(stream, std::move(res_));
    }
      break;
    }
    if (ec) break;  // closed, timed out or malformed: nothing to answer on
    Request req = parser.release();
    stream.expires_never();
    const bool ok = co_await handle(stream, req);
    if (!ok || !req.keep_alive()) break;
  }
  open_streams.erase(&stream);
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

net::awaitable<bool> HttpServer::Impl::handle(beast::tcp_stream& stream, Request& req) {
  std::string_view target(req.target().data(), req.target().size());
  if (const size_t q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
  const auto method = req.method();
  // The web console's pages: no key (the sign-in form is one of them).
  if (method == http::verb::get && ConsoleAssets::serves(target)) {
    auto res_ = console_file_response(req, assets.find(target), target);
    co_return co_await send(stream, std::move(res_));
  }
  if (target == "/health" && method == http::verb::get) {
    if (service.draining()) {
      auto res_ = make_response(req, 503, R"({"status":"draining"})");
      co_return co_await send(stream, std::move(res_));
    }
    {
      auto res_ = make_response(req, 200, json{{"status", "ok"}, {"model", service.model_name()}}.dump());
      co_return co_await send(stream, std::move(res_));
    }
  }
  if (target == "/metrics" && method == http::verb::get) {
    // The engine's figures are read between steps: this waits at most one step.
    {
      std::string text = prometheus_text(service.metrics_json(), service.stats(), service.draining());
      if (FineTuning* ft = service.fine_tuning()) {
        const FineTuning::Counts c = ft->counts();
        text += prometheus_fine_tuning_text(c.jobs, c.trained_tokens, c.steps, c.versions);
      }
      auto res_ = make_response(req, 200, std::move(text), "text/plain; version=0.0.4");
      co_return co_await send(stream, std::move(res_));
    }
  }
  // Everything else needs a key (when the node has keys).
  std::optional<std::string_view> key;
  if (auto it = req.find(http::field::authorization); it != req.end()) {
    std::string_view v(it->value().data(), it->value().size());
    if (v.rfind("Bearer ", 0) == 0) key = v.substr(7);
  }
  // A browser's EventSource cannot set headers: the console's stream also
  // takes the key as ?key=.
  std::string query_key;
  if (!key && target == "/v1/console/live") {
    const auto fields = query_fields(std::string_view(req.target().data(), req.target().size()));
    if (auto it = fields.find("key"); it != fields.end()) {
      query_key = it->second;
      key = query_key;
    }
  }
  auto caller = tenants.authenticate(key);
  if (!caller.ok()) {
      auto res_ = error_response(req, openai::invalid_api_key(caller.error().message));
      co_return co_await send(stream, std::move(res_));
    }

  // Operators only (an admin key; any caller of a node without keys).
  if (target == "/admin/cluster" || target == "/admin/drain") {
    if (tenants.requires_key() && !caller.value().admin) {
      auto res_ = error_response(req, openai::ApiError{403, "this needs an admin key", "permission_error", "", "forbidden"});
      co_return co_await send(stream, std::move(res_));
    }
    if (target == "/admin/cluster" && method == http::verb::get) {
      // The gateway's view of every worker: what `myriad cluster ls` prints.
      auto res_ = make_response(req, 200, service.cluster_view().dump());
      co_return co_await send(stream, std::move(res_));
    }
    if (target == "/admin/drain" && method == http::verb::post) {
      std::string_view query(req.target().data(), req.target().size());
      const size_t q = query.find("?worker=");
      if (q == std::string_view::npos || q + 8 == query.size()) {
        auto res_ = error_response(req, openai::invalid_request("expected /admin/drain?worker=ID", "worker",
                                                                "missing_required_parameter"));
        co_return co_await send(stream, std::move(res_));
      }
      const std::string worker = percent_decode(query.substr(q + 8));
      if (Status st = service.drain_worker(worker); !st.ok()) {
        auto res_ = error_response(req, api_error_of(st.error()));
        co_return co_await send(stream, std::move(res_));
      }
      auto res_ = make_response(req, 200, json{{"worker", worker}, {"draining", true}}.dump());
      co_return co_await send(stream, std::move(res_));
    }
  }
  if (target == "/v1/completions" && method == http::verb::post)
    co_return co_await generate(stream, req, caller.value(), openai::Endpoint::kCompletions);
  if (target == "/v1/chat/completions" && method == http::verb::post)
    co_return co_await generate(stream, req, caller.value(), openai::Endpoint::kChatCompletions);
  if (target == "/v1/models" && method == http::verb::get) co_return co_await models(stream, req, caller.value());
  if (target == "/v1/files" || target.rfind("/v1/files/", 0) == 0 || target == "/v1/fine_tuning/jobs" ||
      target.rfind("/v1/fine_tuning/jobs/", 0) == 0) {
    auto res_ = fine_tuning_response(service, req, caller.value(), target);
    co_return co_await send(stream, std::move(res_));
  }
  if (target == "/v1/mixture_builds" || target.rfind("/v1/mixture_builds/", 0) == 0) {
    auto res_ = mixture_build_response(service, req, caller.value(), target);
    co_return co_await send(stream, std::move(res_));
  }
  if (target == "/v1/mixtures" || target.rfind("/v1/mixtures/", 0) == 0)
    co_return co_await mixtures(stream, req, caller.value(), target);
  if (target == "/v1/training_runs" || target.rfind("/v1/training_runs/", 0) == 0)
    co_return co_await training_run_call(stream, req, caller.value(), target);
  if (target == "/v1/training_run_checkpoints" || target.rfind("/v1/training_run_checkpoints/", 0) == 0) {
    auto res_ = run_checkpoints_response(service, req, caller.value(), target);
    co_return co_await send(stream, std::move(res_));
  }
  if (target == "/v1/console/live" && method == http::verb::get)
    co_return co_await console_live(stream, req, caller.value());
  if (target == "/v1/adapters" || target.rfind("/v1/adapters/", 0) == 0 || target == "/v1/load_lora_adapter" ||
      target == "/v1/unload_lora_adapter")
    co_return co_await adapters(stream, req, caller.value(), target);
  {
      auto res_ = error_response(req,
                                 openai::not_found_route(std::string(http::to_string(method)), target));
      co_return co_await send(stream, std::move(res_));
    }
}

net::awaitable<bool> HttpServer::Impl::models(beast::tcp_stream& stream, const Request& req, const Caller& caller) {
  auto list = service.models(caller);
  if (!list.ok()) {
      auto res_ = error_response(req, api_error_of(list.error()));
      co_return co_await send(stream, std::move(res_));
    }
  json data = json::array();
  for (const ModelRef& m : list.value()) {
    if (m.base) {
      data.push_back({{"id", service.model_name()}, {"object", "model"}, {"created", 0}, {"owned_by", "myriad"}});
    } else if (m.mixture) {
      data.push_back(mixture_json(m.mixture->record));
    } else {
      data.push_back({{"id", m.adapter.id.qualified_name()},
                      {"object", "model"},
                      {"created", m.adapter.created_unix_ms / 1000},
                      {"owned_by", m.adapter.id.tenant},
                      {"parent", service.model_name()},
                      {"version", m.adapter.id.version}});
    }
  }
  {
      auto res_ = make_response(req, 200, json{{"object", "list"}, {"data", data}}.dump());
      co_return co_await send(stream, std::move(res_));
    }
}

net::awaitable<bool> HttpServer::Impl::mixtures(beast::tcp_stream& stream, const Request& req, const Caller& caller,
                                                std::string_view path) {
  const auto method = req.method();
  if (path == "/v1/mixtures" && method == http::verb::get) {
    auto list = service.list_mixtures(caller);
    if (!list.ok()) {
      auto res_ = error_response(req, api_error_of(list.error()));
      co_return co_await send(stream, std::move(res_));
    }
    json data = json::array();
    for (const MixtureRecord& m : list.value()) data.push_back(mixture_json(m));
    auto res_ = make_response(req, 200, json{{"object", "list"}, {"data", data}}.dump());
    co_return co_await send(stream, std::move(res_));
  }
  if (path == "/v1/mixtures" && method == http::verb::post) {
    const json body = json::parse(req.body(), nullptr, false);
    if (body.is_object() && body.contains("training_file") && !body.contains("path")) {
      auto res_ = mixture_build_response(service, req, caller, path);
      co_return co_await send(stream, std::move(res_));
    }
    if (!body.is_object() || !body.contains("name") || !body["name"].is_string() || !body.contains("path") ||
        !body["path"].is_string()) {
      auto res_ = error_response(req, openai::invalid_request("name and path (strings) are required, or name, training_file and k to build one", "name",
                                                              "missing_required_parameter"));
      co_return co_await send(stream, std::move(res_));
    }
    auto rec = service.add_mixture_from_path(caller, body["name"].get<std::string>(), body["path"].get<std::string>());
    if (!rec.ok()) {
      auto res_ = error_response(req, rec.error().code == ErrorCode::kIo ? openai::internal_error(rec.error().message)
                                                                          : openai::invalid_request(rec.error().message));
      co_return co_await send(stream, std::move(res_));
    }
    auto res_ = make_response(req, 200, mixture_json(rec.value()).dump());
    co_return co_await send(stream, std::move(res_));
  }
  if (path.rfind("/v1/mixtures/", 0) == 0 && method == http::verb::delete_) {
    const std::string name = percent_decode(path.substr(std::string_view("/v1/mixtures/").size()));
    if (Status st = service.delete_mixture(caller, name); !st.ok()) {
      auto res_ = error_response(req, st.error().code == ErrorCode::kNotFound ? openai::model_not_found(name)
                                                                               : api_error_of(st.error()));
      co_return co_await send(stream, std::move(res_));
    }
    auto res_ = make_response(req, 200, json{{"id", name}, {"object", "mixture"}, {"deleted", true}}.dump());
    co_return co_await send(stream, std::move(res_));
  }
  auto res_ = error_response(req, openai::not_found_route(std::string(http::to_string(method)), path));
  co_return co_await send(stream, std::move(res_));
}

// A training loop the client drives over HTTP (the RPC API's TrainingRun,
// docs/training.md): POST /v1/training_runs opens one; GET lists them or
// describes one; DELETE closes one; POST /v1/training_runs/{id}/
// forward_backward, optim_step, publish and save_state are its calls, each answered
// once the worker has run it (between inference steps, in the order
// posted). Sampling goes through /v1/completions with the published model.
net::awaitable<bool> HttpServer::Impl::training_run_call(beast::tcp_stream& stream, const Request& req,
                                                         const Caller& caller, std::string_view path) {
  const auto method = req.method();
  FineTuning* ft = service.fine_tuning();
  if (!ft) {
    auto res_ = error_response(req, openai::invalid_request(service.fine_tuning_unavailable(), "", "unsupported_value"));
    co_return co_await send(stream, std::move(res_));
  }
  const json body = req.body().empty() ? json::object() : json::parse(req.body(), nullptr, false);
  Result<json> answer = make_error(ErrorCode::kInternal, "unanswered");
  constexpr std::string_view root = "/v1/training_runs";
  if (path == root) {
    if (method == http::verb::post) {
      auto run = body.is_object() ? ft->open_run(caller, body)
                                  : Result<std::shared_ptr<TrainingRun>>(
                                        make_error(ErrorCode::kInvalidArgument, "the body must be a JSON object"));
      answer = run.ok() ? training_runs.add(caller, run.value()) : Result<json>(run.error());
    } else if (method == http::verb::get) {
      answer = training_runs.list(caller);
    } else {
      answer = make_error(ErrorCode::kNotFound, std::string(http::to_string(method)) + " " + std::string(path));
    }
  } else {
    std::string_view rest = path.substr(root.size() + 1);
    const size_t slash = rest.find('/');
    const std::string id(rest.substr(0, slash));
    const std::string_view call = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
    auto run = training_runs.get(caller, id);
    if (!run.ok()) {
      answer = run.error();
    } else if (call.empty() && method == http::verb::get) {
      answer = training_runs.describe(caller, id);
    } else if (call.empty() && method == http::verb::delete_) {
      const Status st = training_runs.close(caller, id);
      answer = st.ok() ? Result<json>(json{{"id", id}, {"object", "training_run"}, {"deleted", true}})
                       : Result<json>(st.error());
    } else if (method == http::verb::post && (call == "forward_backward" || call == "optim_step" ||
                                              call == "publish" || call == "save_state")) {
      auto waiting = std::make_shared<RunAnswer>(stream.get_executor());
      auto g = gate;
      bool posted = true;
      if (call == "forward_backward") {
        std::vector<std::string> lines;
        if (body.is_object() && body.contains("examples") && body["examples"].is_array())
          for (const json& e : body["examples"]) lines.push_back(e.is_string() ? e.get<std::string>() : e.dump());
        auto batch = body.is_object() && body.contains("examples") && body["examples"].is_array()
                         ? ft->parse_examples(lines)
                         : Result<std::vector<TrainingExample>>(make_error(
                               ErrorCode::kInvalidArgument, "examples: required, an array of training examples"));
        if (!batch.ok()) {
          answer = batch.error();
          posted = false;
        } else {
          run.value()->forward_backward(std::move(batch.value()), [g, waiting](Result<ForwardBackwardResult> r) {
            deliver(g, waiting,
                    r.ok() ? Result<json>(json{{"loss", r.value().loss},
                                               {"tokens", r.value().tokens},
                                               {"target_tokens", r.value().target_tokens}})
                           : Result<json>(r.error()));
          });
        }
      } else if (call == "optim_step") {
        const bool has_lr = body.is_object() && body.contains("learning_rate") && body["learning_rate"].is_number();
        const bool bad_clip = body.is_object() && body.contains("max_grad_norm") && !body["max_grad_norm"].is_number();
        if (!has_lr || bad_clip) {
          answer = make_error(ErrorCode::kInvalidArgument,
                              has_lr ? "max_grad_norm: a number (0: no clipping; default 1)"
                                     : "learning_rate: required, a number > 0");
          posted = false;
        } else {
          run.value()->optim_step(body["learning_rate"].get<double>(), body.value("max_grad_norm", 1.0),
                                  [g, waiting](Result<OptimStepResult> r) {
                                    deliver(g, waiting,
                                            r.ok() ? Result<json>(json{{"step", r.value().step},
                                                                       {"grad_norm", r.value().grad_norm},
                                                                       {"accumulated", r.value().accumulated}})
                                                   : Result<json>(r.error()));
                                  });
        }
      } else if (call == "save_state") {
        run.value()->state([g, waiting](Result<std::shared_ptr<const TrainingRunState>> state) {
          if (!state.ok()) return deliver(g, waiting, state.error());
          deliver(g, waiting, json(), nullptr, 0, std::move(state.value()));
        });
      } else {
        run.value()->snapshot([g, waiting](Result<RunSnapshot> snap) {
          if (!snap.ok()) return deliver(g, waiting, snap.error());
          deliver(g, waiting, json(), std::move(snap.value().weights), snap.value().step);
        });
      }
      if (posted) {
        co_await wait_for_answer(waiting);
        answer = std::move(*waiting->result);
        if (call == "publish" && answer.ok()) {
          // Written here, off the worker's thread (as the RPC API does on its loop).
          auto rec = ft->publish_run(*run.value(), std::move(waiting->weights), waiting->step);
          answer = rec.ok() ? Result<json>(json{{"model", rec.value().id.to_string()},
                                                {"adapter", rec.value().id.to_string()},
                                                {"step", waiting->step}})
                            : Result<json>(rec.error());
        }
        if (call == "save_state" && answer.ok()) answer = ft->save_run_state(*run.value(), *waiting->state);
      }
    } else {
      answer = make_error(ErrorCode::kNotFound, std::string(http::to_string(method)) + " " + std::string(path));
    }
  }
  if (!answer.ok()) {
    auto res_ = error_response(req, api_error_of(answer.error()));
    co_return co_await send(stream, std::move(res_));
  }
  auto res_ = make_response(req, 200, answer.value().dump());
  co_return co_await send(stream, std::move(res_));
}

net::awaitable<bool> HttpServer::Impl::adapters(beast::tcp_stream& stream, const Request& req, const Caller& caller,
                                                std::string_view path) {
  const json body = req.body().empty() ? json::object() : json::parse(req.body(), nullptr, false);
  auto text = [&](const char* field) -> std::optional<std::string> {
    if (body.is_object() && body.contains(field) && body[field].is_string()) return body[field].get<std::string>();
    return std::nullopt;
  };
  if (req.method() == http::verb::post && (path == "/v1/adapters" || path == "/v1/load_lora_adapter")) {
    const bool vllm = path == "/v1/load_lora_adapter";
    auto ct = req.find(http::field::content_type);
    const std::string_view content_type =
        ct == req.end() ? std::string_view() : std::string_view(ct->value().data(), ct->value().size());
    if (!vllm && content_type.rfind("multipart/", 0) == 0) {
      // An upload from the client's host: a "name" field and the two PEFT files.
      auto parts = parse_multipart(content_type, req.body());
      std::string_view name, config, weights;
      if (parts.ok()) {
        for (const FormPart& p : parts.value()) {
          if (p.name == "name") name = p.data;
          if (p.filename == "adapter_config.json" || p.name == "adapter_config.json") config = p.data;
          if (p.filename == "adapter_model.safetensors" || p.name == "adapter_model.safetensors") weights = p.data;
        }
      }
      openai::ApiError e;
      bool ok = parts.ok() && !name.empty() && !config.empty() && !weights.empty();
      if (!parts.ok()) e = openai::invalid_request(parts.error().message);
      else if (!ok) e = openai::invalid_request("an upload needs a 'name' field and the files adapter_config.json and "
                                               "adapter_model.safetensors", "name", "missing_required_parameter");
      std::optional<AdapterRecord> added;
      if (ok) {
        auto rec = service.add_adapter_bytes(caller, name, config, weights);
        if (rec.ok()) {
          added = rec.value();
        } else {
          e = rec.error().code == ErrorCode::kIo ? openai::internal_error(rec.error().message)
                                                 : openai::invalid_request(rec.error().message);
          ok = false;
        }
      }
      if (!ok) {
        auto res_ = error_response(req, e);
        co_return co_await send(stream, std::move(res_));
      }
      {
        auto res_ = make_response(req, 200, adapter_json(*added).dump());
        co_return co_await send(stream, std::move(res_));
      }
    }
    if (body.is_discarded() || !body.is_object())
      {
      auto res_ = error_response(req, openai::invalid_request("the body must be a JSON object"));
      co_return co_await send(stream, std::move(res_));
    }
    const auto name = text(vllm ? "lora_name" : "name");
    const auto dir = text(vllm ? "lora_path" : "path");
    if (!name || !dir)
      {
      auto res_ = error_response(req,
          openai::invalid_request(vllm ? "lora_name and lora_path (strings) are required"
                                       : "name and path (strings) are required, or name, training_file and k to build one",
                                  vllm ? "lora_name" : "name", "missing_required_parameter"));
      co_return co_await send(stream, std::move(res_));
    }
    auto rec = service.add_adapter_from_path(caller, *name, *dir);
    if (!rec.ok()) {
      openai::ApiError e = openai::invalid_request(rec.error().message);
      if (rec.error().code == ErrorCode::kIo) e = openai::internal_error(rec.error().message);
      {
      auto res_ = error_response(req, e);
      co_return co_await send(stream, std::move(res_));
    }
    }
    if (vllm)
      {
      auto res_ = make_response(req, 200, "Success: LoRA adapter '" + *name + "' added successfully.",
                               "text/plain");
      co_return co_await send(stream, std::move(res_));
    }
    {
      auto res_ = make_response(req, 200, adapter_json(rec.value()).dump());
      co_return co_await send(stream, std::move(res_));
    }
  }
  if (req.method() == http::verb::get && (path == "/v1/adapters" || path.rfind("/v1/adapters/", 0) == 0)) {
    auto res_ = adapter_listing_response(service, req, caller, path);
    co_return co_await send(stream, std::move(res_));
  }
  std::string name;
  if (req.method() == http::verb::delete_ && path.rfind("/v1/adapters/", 0) == 0) {
    name = percent_decode(path.substr(std::string_view("/v1/adapters/").size()));
  } else if (req.method() == http::verb::post && path == "/v1/unload_lora_adapter") {
    const auto n = text("lora_name");
    if (!n)
      {
      auto res_ = error_response(req,
                                     openai::invalid_request("lora_name (a string) is required", "lora_name",
                                                             "missing_required_parameter"));
      co_return co_await send(stream, std::move(res_));
    }
    name = *n;
  } else {
    {
      auto res_ = error_response(req,
                                   openai::not_found_route(std::string(http::to_string(req.method())), path));
      co_return co_await send(stream, std::move(res_));
    }
  }
  if (Status st = service.remove_adapter(caller, name); !st.ok())
    {
      auto res_ = error_response(req,
                                   st.error().code == ErrorCode::kNotFound || st.error().code == ErrorCode::kInvalidArgument
                                       ? openai::model_not_found(name)
                                       : api_error_of(st.error()));
      co_return co_await send(stream, std::move(res_));
    }
  if (path == "/v1/unload_lora_adapter")
    {
      auto res_ = make_response(req, 200, "Success: LoRA adapter '" + name + "' removed successfully.",
                             "text/plain");
      co_return co_await send(stream, std::move(res_));
    }
  {
      auto res_ = make_response(req, 200, json{{"id", name}, {"object", "adapter"}, {"deleted", true}}.dump());
      co_return co_await send(stream, std::move(res_));
    }
}

std::variant<PreparedGeneration, Response> HttpServer::Impl::prepare_generation(const Request& req,
                                                                              const Caller& caller,
                                                                              openai::Endpoint endpoint) {
  const bool chat = endpoint == openai::Endpoint::kChatCompletions;
  // What an error about prompt p of `count` names.
  const auto prompt_param = [chat](size_t p, size_t count) {
    return chat ? std::string("messages") : count > 1 ? "prompt[" + std::to_string(p) + "]" : std::string("prompt");
  };
  openai::ProtocolLimits limits;
  limits.max_body_bytes = opts.max_body_bytes;
  limits.max_top_logprobs = service.max_top_logprobs();
  limits.applies_logit_bias = service.applies_logit_bias();
  PreparedGeneration g;
  g.endpoint = endpoint;
  if (chat) {
    auto call = openai::parse_chat_request(req.body(), limits);
    if (!call.ok()) return error_response(req, call.error());
    g.model = call.value().model;
    g.options = call.value().options;
    std::optional<std::string> route_text;  // a mixture routes on the last user message
    for (const auto& m : call.value().messages)
      if (m.role == "user") route_text = m.content;
    auto ids = service.encode_chat(openai::template_messages(call.value().messages));
    if (!ids.ok()) return error_response(req, openai::invalid_request(ids.error().message, "messages"));
    g.prompts.push_back(std::move(ids.value()));
    g.route_texts.push_back(std::move(route_text));
  } else {
    auto call = openai::parse_completion_request(req.body(), limits);
    if (!call.ok()) return error_response(req, call.error());
    g.model = call.value().model;
    g.options = call.value().options;
    g.echo = call.value().echo;
    const int64_t vocab = service.model_config().vocab_size;
    for (size_t p = 0; p < call.value().prompts.size(); ++p) {
      const openai::PromptInput& in = call.value().prompts[p];
      const std::string param = prompt_param(p, call.value().prompts.size());
      std::vector<int32_t> ids;
      if (const auto* text = std::get_if<std::string>(&in)) {
        auto encoded = service.encode_prompt(*text);
        if (!encoded.ok()) return error_response(req, api_error_of(encoded.error()));
        ids = std::move(encoded.value());
        g.route_texts.push_back(*text);
      } else {
        ids = std::get<std::vector<int32_t>>(in);
        for (size_t i = 0; i < ids.size(); ++i)
          if (ids[i] < 0 || ids[i] >= vocab)
            return error_response(
                req, openai::invalid_request(param + " token " + std::to_string(i) + " is " + std::to_string(ids[i]) +
                                                 ", outside the vocabulary [0, " + std::to_string(vocab) + ")",
                                             param, "invalid_value"));
        g.route_texts.push_back(std::nullopt);
      }
      if (g.echo) {
        EchoedPrompt e;
        const auto* text = std::get_if<std::string>(&in);
        e.text = text ? *text : service.tokenizer().decode(ids);
        // Each token's piece of the text as decoding the whole prompt makes
        // it (a leading-space marker reads as a space after the first).
        if (g.options.logprobs)
          for (size_t i = 0; i < ids.size(); ++i)
            e.tokens.push_back(service.tokenizer().decode_bytes(std::span(ids).subspan(i, 1), false, i == 0));
        g.echoed.push_back(std::move(e));
      }
      g.prompts.push_back(std::move(ids));
    }
  }
  auto ref = service.resolve(g.model, caller);
  if (!ref.ok()) return error_response(req, openai::model_not_found(g.model));
  g.ref = std::move(ref.value());
  if (g.ref.mixture && g.prompts.size() > 1)
    return error_response(req, openai::invalid_request("a mixture routes each request to its experts: send " +
                                                           g.ref.name() + " one prompt per request, not " +
                                                           std::to_string(g.prompts.size()),
                                                       "prompt", "invalid_value"));
  const int64_t context = service.context_length() > 0 ? service.context_length() : int64_t(1) << 30;
  const bool several = g.prompts.size() > 1;
  int64_t longest = 0, prompt_tokens = 0;
  for (size_t p = 0; p < g.prompts.size(); ++p) {
    const std::string param = prompt_param(p, g.prompts.size());
    const int64_t len = int64_t(g.prompts[p].size());
    if (len == 0) return error_response(req, openai::invalid_request("the prompt is empty", param));
    if (len >= context)
      return error_response(req, openai::invalid_request("the prompt has " + std::to_string(len) +
                                                             " tokens; the model's context is " +
                                                             std::to_string(context),
                                                         param));
    longest = std::max(longest, len);
    prompt_tokens += len;
  }
  const int64_t left = context - longest;
  const int64_t max_tokens = g.options.max_tokens ? int64_t(*g.options.max_tokens) : (chat ? left : 16);
  if (max_tokens > left)
    return error_response(
        req, openai::invalid_request("max_tokens " + std::to_string(max_tokens) + " exceeds the context left, " +
                                         std::to_string(left) + " (the " + (several ? "longest " : "") +
                                         "prompt has " + std::to_string(longest) + " of the model's " +
                                         std::to_string(context) + " tokens)",
                                     chat ? "max_completion_tokens" : "max_tokens", "invalid_value"));
  g.max_tokens = uint32_t(max_tokens);
  const int64_t cost = (prompt_tokens + int64_t(g.prompts.size()) * max_tokens) * int64_t(g.options.n);
  // Each choice is an engine request and counts as an open one.
  auto [ticket, refused] = opts.limits->admit(caller.tenant, cost, int(g.prompts.size() * g.options.n));
  if (refused) return error_response(req, openai::rate_limited(refused->message), refused->retry_after_s);
  g.ticket = std::move(ticket);
  return g;
}

std::variant<std::vector<RequestId>, Response> HttpServer::Impl::submit_choices(const Request& req,
                                                                               PreparedGeneration& g,
                                                                               const std::shared_ptr<Relay>& relay,
                                                                               ExpertNames& names) {
  std::vector<RequestId> ids;
  const auto give_up = [&](const openai::ApiError& e, int retry_after_s) {
    for (const RequestId id : ids) service.cancel(id);
    return error_response(req, e, retry_after_s);
  };
  const bool prompt_logprobs = g.echo && g.options.logprobs;
  for (size_t p = 0; p < g.prompts.size(); ++p) {
    GenerateCall base;
    base.model = g.ref;
    if (g.ref.mixture) {
      auto experts =
          g.route_texts[p] ? service.route(g.ref, *g.route_texts[p]) : service.route_ids(g.ref, g.prompts[p]);
      if (!experts.ok()) return give_up(api_error_of(experts.error()), 0);
      base.experts = std::move(experts.value());
      base.prefill_router = service.prefill_router(g.ref, g.prompts[p]);
      names.experts = base.experts;
      names.routed_in_prefill = base.prefill_router != nullptr;
    }
    base.prompt = g.prompts[p];
    base.sampling = g.options.sampling;
    base.sampling.top_logprobs = g.options.top_logprobs;
    base.logit_bias = g.options.logit_bias;
    base.min_tokens = g.options.min_tokens;
    base.stop_token_ids = g.options.stop_token_ids;
    base.max_tokens = g.max_tokens;
    base.stop = g.options.stop;
    base.ignore_eos = g.options.ignore_eos;
    // Scoring the prompt only still asks for something to compute.
    base.prompt_logits = prompt_logprobs ? LogitsRequest::kAll
                         : g.max_tokens == 0 ? LogitsRequest::kLast
                                             : LogitsRequest::kNone;
    const auto prompt = prompt_logprobs ? std::make_shared<const std::vector<int32_t>>(g.prompts[p]) : nullptr;
    for (uint32_t j = 0; j < g.options.n; ++j) {
      GenerateCall call = base;
      // n samples of one seed differ as vLLM's do: sample j draws from seed + j.
      call.sampling.seed = g.options.has_seed ? g.options.sampling.seed + j : seeds();
      const uint32_t choice = uint32_t(p) * g.options.n + j;
      std::shared_ptr<Gate> gate_ = gate;
      const uint32_t top_k = g.options.top_logprobs;
      auto id = service.generate(std::move(call), [gate_, relay, choice, prompt, top_k](const RequestEvent& e) {
        if (e.kind == EventKind::kLogits && !prompt) return;  // asked for only to score an empty output
        ChoiceEvent ev;
        static_cast<EventCopy&>(ev) = EventCopy::of(e);
        ev.choice = choice;
        if (e.kind == EventKind::kLogits) {
          // Reduced here, in the node's event relay, while the logits are
          // at hand: positions x vocabulary floats become one logprob (and
          // the alternatives asked for) per token.
          ev.prompt_start = e.logits_start + 1;
          ev.prompt_logprobs =
              prompt_logprobs_of(e.logits, e.logits_start, e.logits_count, *prompt, top_k, &ev.prompt_top);
        }
        std::lock_guard lock(gate_->mu);
        if (!gate_->open) return;
        net::post(*gate_->io, [relay, ev = std::move(ev)]() mutable {
          relay->events.push_back(std::move(ev));
          relay->timer.cancel();
        });
      });
      // A full worker queue (overloaded) asks the client to retry in a second.
      if (!id.ok()) return give_up(api_error_of(id.error()), id.error().code == ErrorCode::kOverloaded ? 1 : 0);
      ids.push_back(id.value());
    }
  }
  return ids;
}

net::awaitable<bool> HttpServer::Impl::generate(beast::tcp_stream& stream, const Request& req, const Caller& caller,
                                                openai::Endpoint endpoint) {
  auto prepared = prepare_generation(req, caller, endpoint);
  if (Response* refused = std::get_if<Response>(&prepared)) co_return co_await send(stream, std::move(*refused));
  PreparedGeneration& g = std::get<PreparedGeneration>(prepared);
  auto relay = std::make_shared<Relay>(stream.get_executor());
  ExpertNames names;
  auto submitted = submit_choices(req, g, relay, names);
  if (Response* refused = std::get_if<Response>(&submitted)) co_return co_await send(stream, std::move(*refused));
  const std::vector<RequestId> ids = std::get<std::vector<RequestId>>(submitted);

  openai::ResponseMeta meta;
  meta.id = openai::response_id(endpoint, ids.front());
  meta.created = std::chrono::duration_cast<std::chrono::seconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
  meta.model = g.model;
  // Routed in the prefill: the experts are known from its first event on.
  if (!names.routed_in_prefill)
    for (const RoutedExpert& e : names.experts) meta.experts.push_back({e.name, e.weight});
  meta.logprobs = g.options.logprobs;
  meta.include_usage = g.options.include_usage;
  std::vector<uint32_t> prompt_tokens;
  for (const auto& p : g.prompts) prompt_tokens.push_back(uint32_t(p.size()));
  // An alternative's text: the piece its token adds after earlier text.
  const Tokenizer* tokenizer = &service.tokenizer();
  auto token_text = [tokenizer](int32_t id) { return tokenizer->decode_bytes(std::span(&id, 1), false, false); };
  CompletionChoices choices(endpoint, std::move(meta), g.options.n, std::move(prompt_tokens), std::move(g.echoed),
                            token_text);

  const HangupWatch watch(stream.socket(), relay);
  if (!g.options.stream) {
    bool over = false;
    while (!over && !relay->client_gone) {
      co_await wait_for_event(relay);
      over = take_events(*relay, choices, names);
    }
    if (relay->client_gone) {
      for (const RequestId id : ids) service.cancel(id);  // nobody to answer: free their places in the batch
      co_return false;
    }
    if (choices.failure()) {
      for (const RequestId id : ids) service.cancel(id);  // the others' answers are moot
      auto res_ = error_response(req, api_error_of(*choices.failure()));
      co_return co_await send(stream, std::move(res_));
    }
    auto res_ = make_response(req, 200, choices.body());
    co_return co_await send(stream, std::move(res_));
  }

  // Streamed: server-sent events in one chunked response.
  http::response<http::empty_body> head{http::status::ok, req.version()};
  head.set(http::field::server, "myriad");
  head.set(http::field::content_type, "text/event-stream");
  head.set(http::field::cache_control, "no-cache");
  head.keep_alive(req.keep_alive());
  head.chunked(true);
  http::response_serializer<http::empty_body> sr{head};
  beast::error_code ec;
  co_await http::async_write_header(stream, sr, net::redirect_error(net::use_awaitable, ec));
  bool alive = !ec;
  const std::vector<std::string> opening = choices.opening_chunks();
  for (size_t i = 0; alive && i < opening.size(); ++i) alive = co_await send_chunk(stream, opening[i]);
  bool done = false;
  while (alive && !done) {
    co_await wait_for_event(relay);
    const std::vector<std::string> chunks = stream_events(*relay, choices, names, done);
    for (size_t i = 0; alive && i < chunks.size(); ++i) alive = co_await send_chunk(stream, chunks[i]);
    alive = alive && !relay->client_gone;
  }
  // The client is gone, or a choice failed: free the others' KV and places in the batch.
  if (!alive || choices.failure())
    for (const RequestId id : ids) service.cancel(id);
  if (!alive) co_return false;
  co_await net::async_write(stream, http::make_chunk_last(), net::redirect_error(net::use_awaitable, ec));
  co_return !ec;
}

const json& HttpServer::Impl::live_view() {
  constexpr auto kLiveMinAge = std::chrono::milliseconds(250);
  const auto now = std::chrono::steady_clock::now();
  if (live_cache.is_null() || now - live_taken >= kLiveMinAge) {
    live_cache = live_snapshot(service);
    live_taken = now;
  }
  return live_cache;
}

namespace {
// ?interval_ms= of the console's stream: 1000 by default, 100..60000.
std::optional<openai::ApiError> live_interval_ms(const Request& req, int64_t& ms) {
  ms = 1000;
  return query_int(query_fields(std::string_view(req.target().data(), req.target().size())), "interval_ms", 100,
                   60000, ms);
}

http::response<http::empty_body> event_stream_head(const Request& req) {
  http::response<http::empty_body> head{http::status::ok, req.version()};
  head.set(http::field::server, "myriad");
  head.set(http::field::content_type, "text/event-stream");
  head.set(http::field::cache_control, "no-cache");
  head.keep_alive(false);  // it ends only when the client goes
  head.chunked(true);
  return head;
}

std::string data_event(const json& j) { return "data: " + j.dump() + "\n\n"; }

}  // namespace

// GET /v1/console/live: one snapshot now, then one per interval, until the
// client goes (noticed at the next write) or the server stops.
net::awaitable<bool> HttpServer::Impl::console_live(beast::tcp_stream& stream, const Request& req,
                                                    const Caller& caller) {
  int64_t interval = 0;
  if (auto bad = live_interval_ms(req, interval)) {
    auto res_ = error_response(req, *bad);
    co_return co_await send(stream, std::move(res_));
  }
  auto head = event_stream_head(req);
  http::response_serializer<http::empty_body> sr{head};
  beast::error_code ec;
  co_await http::async_write_header(stream, sr, net::redirect_error(net::use_awaitable, ec));
  net::steady_timer timer(io);
  while (!ec) {
    if (!co_await send_chunk(stream, data_event(live_for(live_view(), caller)))) break;
    timer.expires_after(std::chrono::milliseconds(interval));
    co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
  }
  co_return false;
}

Result<std::unique_ptr<HttpServer>> HttpServer::start(NodeService& service, const Tenants& tenants,
                                                      const HttpOptions& options) {
  auto impl = std::make_unique<Impl>(service, tenants, options);
  beast::error_code ec;
  const auto address = net::ip::make_address(options.host, ec);
  if (ec) return make_error(ErrorCode::kInvalidArgument, "--http " + options.host + ": not an IP address");
  const tcp::endpoint ep{address, options.port};
  impl->acceptor.open(ep.protocol(), ec);
  if (!ec) impl->acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(ep, ec);
  if (!ec) impl->acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec)
    return make_error(ErrorCode::kIo, "cannot listen on " + options.host + ":" + std::to_string(options.port) + ": " +
                                          ec.message());
  Impl* p = impl.get();
  p->bound_port = p->acceptor.local_endpoint(ec).port();
  net::co_spawn(p->io, p->listen(), net::detached);
  p->thread = std::thread([p] { p->io.run(); });
  log_info("http: listening on {}:{}", options.host, p->bound_port);
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpServer::~HttpServer() { stop(); }

uint16_t HttpServer::port() const { return impl_->bound_port; }

void HttpServer::stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  {
    std::lock_guard lock(impl_->gate->mu);
    impl_->gate->open = false;
  }
  net::post(impl_->io, [p = impl_.get()] {
    beast::error_code ec;
    p->acceptor.close(ec);
    for (beast::tcp_stream* s : p->open_streams) s->socket().close(ec);
    p->io.stop();
  });
  impl_->thread.join();
}

}  // namespace myriad::node
