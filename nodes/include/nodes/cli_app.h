// The command-line conventions every Myriad program shares (`myriad` and the
// bench/ programs), over CLI11:
//  - flags are `--flag value` or `--flag=value`; switches take no value; a
//    flag given twice keeps its last value, except the repeatable ones
//    (repeatable(): one value per occurrence, all kept);
//  - `--help` / `-h`, wherever they stand, print the usage to stdout and
//    exit 0, before any other flag is checked;
//  - bad usage (an unknown flag, a stray argument, a missing, malformed or
//    refused value, a missing required flag) prints "<program>: <what>",
//    naming the flag, to stderr and exits 2 (kExitUsage);
//  - `--log-level LEVEL` (runtime/log.h) sets the process's log level once
//    parsing succeeds; the default is warn, so the programs' output is
//    unchanged unless asked.
// Header-only, and CLI11 is slow to compile: include it from one translation
// unit per program.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/log.h"

namespace myriad::cli {

inline constexpr int kExitUsage = 2;

// Help as Myriad prints it: "usage: PROGRAM [flags]" first, then what the
// program does, then one line per flag: the flag, its value's name
// (option_text, e.g. DIR) and "(required)" where it is, and the description,
// which says the default.
class HelpFormatter : public CLI::Formatter {
 public:
  HelpFormatter() {
    label("Usage", "usage");
    label("OPTIONS", "flags");
    label("SUBCOMMAND", "<command>");
    column_width(30);
  }
  std::string make_help(const CLI::App* app, std::string name, CLI::AppFormatMode mode) const override {
    if (mode == CLI::AppFormatMode::Sub) return CLI::Formatter::make_help(app, name, mode);
    std::stringstream out;
    out << make_usage(app, name) << make_description(app) << make_positionals(app) << make_groups(app, mode)
        << make_subcommands(app, mode) << '\n'
        << make_footer(app);
    return out.str();
  }
  std::string make_option_opts(const CLI::Option* opt) const override {
    if (opt->get_option_text().empty()) return CLI::Formatter::make_option_opts(opt);
    return " " + opt->get_option_text() + (opt->get_required() ? " (required)" : "");
  }
};

// Sets the conventions on a program's app; call it before adding flags and
// subcommands (both inherit them).
inline void set_conventions(CLI::App& app) {
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)->group("flags");
  app.formatter(std::make_shared<HelpFormatter>());
  app.set_help_flag("-h,--help", "print this help and exit");
}

// A subcommand of `app` (`myriad generate`), with the conventions.
inline CLI::App* add_command(CLI::App& app, const std::string& name, const std::string& description) {
  CLI::App* cmd = app.add_subcommand(name, description);
  cmd->group("commands");
  cmd->get_help_ptr()->group("flags");  // made before the subcommand took app's option defaults
  return cmd;
}

// A vector-bound option that may be given several times, one value each.
inline CLI::Option* repeatable(CLI::Option* opt) {
  return opt->allow_extra_args(false)->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
}

// A check for a number flag: the value must be at least `lo`. CLI11 puts the
// flag's name before the message ("--rate: -1 is below the minimum 0").
inline CLI::Validator at_least(double lo) {
  return CLI::Validator(
      [lo](std::string& text) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(text, v)) return "'" + text + "' is not a number";
        if (v >= lo) return {};
        char min[32];
        std::snprintf(min, sizeof min, "%g", lo);
        return text + " is below the minimum " + min;
      },
      "", "at least");
}

// `--log-level LEVEL` on `app`, checked while parsing, stored in `level`.
inline CLI::Option* add_log_level(CLI::App& app, LogLevel& level) {
  const CLI::Validator known(
      [](std::string& text) {
        const auto l = parse_log_level(text);
        return l.ok() ? std::string() : l.error().message;
      },
      "", "log level");
  return app
      .add_option_function<std::string>(
          "--log-level", [&level](const std::string& text) { level = parse_log_level(text).value(); },
          std::string("log lines to stderr at this level and above: ") + log_level_names() + " (default " +
              log_level_name(level) + ")")
      ->check(known)
      ->option_text("LEVEL");
}

// "myriad generate" for a parsed app whose subcommand `generate` was chosen.
inline std::string command_path(const CLI::App& app) {
  std::string path = app.get_name();
  for (const CLI::App* sub = &app; !sub->get_subcommands().empty();) {
    sub = sub->get_subcommands().front();
    path += " " + sub->get_name();
  }
  return path;
}

// Parses argv into `app`'s bindings; on success sets the log level to
// `level` (bound by add_log_level). Returns the exit code when the program
// should stop here (0 after printing help, kExitUsage after bad usage),
// std::nullopt when it should go on.
inline std::optional<int> parse(CLI::App& app, int argc, char** argv, const LogLevel& level) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);  // the chosen subcommand's help, if any
    return 0;
  } catch (const CLI::ParseError& e) {
    // CLI11 checks values before it looks at --help: let help win anyway.
    for (int i = 1; i < argc && std::string_view(argv[i]) != "--"; ++i) {
      if (std::string_view(argv[i]) == "--help" || std::string_view(argv[i]) == "-h") {
        std::fputs(app.help().c_str(), stdout);
        return 0;
      }
    }
    std::string what = e.what();
    const std::vector<std::string> extra = app.remaining(/*recurse=*/true);  // in command-line order
    if (dynamic_cast<const CLI::ExtrasError*>(&e) != nullptr) {
      what = "not expected: " + CLI::detail::join(extra, " ");
    } else if (dynamic_cast<const CLI::RequiredError*>(&e) != nullptr && !extra.empty()) {
      // CLI11 checks for missing required flags before unknown ones, so a
      // misspelt required flag would be reported only as missing: name both.
      what += "; not expected: " + CLI::detail::join(extra, " ");
    }
    const std::string path = command_path(app);
    std::fprintf(stderr, "%s: %s\nrun '%s --help' for the flags\n", path.c_str(), what.c_str(), path.c_str());
    return kExitUsage;
  }
  set_log_level(level);
  return std::nullopt;
}

}  // namespace myriad::cli
