// Chat templates rendered exactly as Hugging Face renders them:
//  - every chat case of the tokenizer goldens (llama3, qwen3 and the
//    Llama-2-chat template of mistral/golden.json), whose `rendered` texts come
//    from transformers.js apply_chat_template (see golden.json chat_renderer);
//  - templates in the style of ChatML, Mistral instruct, Llama-2 chat (with a
//    default system prompt), Zephyr (multi-line, relies on trim_blocks and
//    lstrip_blocks), Gemma, a tools template with tojson(indent=4), and the
//    real Qwen3 template on tool calls, tool responses and reasoning. Their
//    expected texts in kOwnTemplates were produced by Jinja2 3.1.6 set up as
//    transformers sets it up (ImmutableSandboxedEnvironment, trim_blocks,
//    lstrip_blocks, loopcontrols, its tojson and raise_exception).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "runtime/chat_template.h"
#include "test_fixtures.h"

using myriad::testing::fixtures_dir;

namespace myriad {
namespace {


nlohmann::json load_json(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

std::string tokenizer_dir(const char* name) { return fixtures_dir() + "/tokenizers/" + name; }

// The template a golden was rendered with: tokenizer_config.json's
// chat_template, or golden.json's chat.template where the config has none.
std::string golden_template(const nlohmann::json& golden, const nlohmann::json& config) {
  auto from_config = chat_template_from_config(config);
  if (from_config.ok()) return from_config.value();
  return golden.at("chat").at("template").get<std::string>();
}

class GoldenChatTest : public ::testing::TestWithParam<const char*> {};

TEST_P(GoldenChatTest, RenderChatTemplateMatchesEveryGoldenCase) {
  const std::string dir = tokenizer_dir(GetParam());
  const auto golden = load_json(dir + "/golden.json");
  const auto config = load_json(dir + "/tokenizer_config.json");
  const std::string source = golden_template(golden, config);
  const auto& cases = golden.at("chat").at("cases");
  ASSERT_FALSE(cases.empty());
  for (const auto& c : cases) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    auto r = render_chat_template(source, c.at("messages"), true, config);
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    EXPECT_EQ(r.value(), c.at("rendered").get<std::string>());
  }
}

TEST_P(GoldenChatTest, CompiledTemplateWithGoldenContextMatches) {
  const std::string dir = tokenizer_dir(GetParam());
  const auto golden = load_json(dir + "/golden.json");
  const auto config = load_json(dir + "/tokenizer_config.json");
  auto tmpl = ChatTemplate::compile(golden_template(golden, config));
  ASSERT_TRUE(tmpl.ok()) << tmpl.error().to_string();
  for (const auto& c : golden.at("chat").at("cases")) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    nlohmann::json context = golden.at("chat").at("context");
    context["messages"] = c.at("messages");
    auto r = tmpl->render(context);
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    EXPECT_EQ(r.value(), c.at("rendered").get<std::string>());
  }
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, GoldenChatTest, ::testing::Values("llama3", "qwen3", "mistral"));

TEST(ChatTemplateTest, Llama2TemplateRejectsNonAlternatingRoles) {
  const auto golden = load_json(tokenizer_dir("mistral") + "/golden.json");
  const auto config = load_json(tokenizer_dir("mistral") + "/tokenizer_config.json");
  nlohmann::json messages = {{{"role", "user"}, {"content", "a"}}, {{"role", "user"}, {"content", "b"}}};
  auto r = render_chat_template(golden["chat"]["template"].get<std::string>(), messages, true, config);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find("Conversation roles must alternate user/assistant/user/assistant/..."),
            std::string::npos)
      << r.error().message;
}

TEST(ChatTemplateTest, SpecialTokensMayBeStringsOrContentObjectsAndNullIsUndefined) {
  nlohmann::json config = {{"bos_token", {{"content", "<B>"}, {"lstrip", false}}},
                           {"eos_token", "<E>"},
                           {"unk_token", nullptr},
                           {"additional_special_tokens", {"<x>", {{"content", "<y>"}}}}};
  auto r = render_chat_template("{{ bos_token }}|{{ eos_token }}|{{ unk_token is defined }}|{{ pad_token is defined }}|"
                                "{{ add_generation_prompt }}|{{ messages | length }}|{{ additional_special_tokens }}",
                                nlohmann::json::array({{{"role", "user"}, {"content", "x"}}}), false, config);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r.value(), "<B>|<E>|False|False|False|1|['<x>', '<y>']");
}

TEST(ChatTemplateTest, TemplateFromConfig) {
  EXPECT_EQ(chat_template_from_config({{"chat_template", "abc"}}).value(), "abc");
  nlohmann::json named = {{"chat_template",
                           {{{"name", "default"}, {"template", "D"}}, {{"name", "tool_use"}, {"template", "T"}}}}};
  EXPECT_EQ(chat_template_from_config(named).value(), "D");
  EXPECT_EQ(chat_template_from_config(named, "tool_use").value(), "T");
  EXPECT_EQ(chat_template_from_config(named, "rag").error().code, ErrorCode::kNotFound);
  const auto mistral = load_json(tokenizer_dir("mistral") + "/tokenizer_config.json");
  EXPECT_EQ(chat_template_from_config(mistral).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(chat_template_from_config({{"chat_template", 5}}).error().code, ErrorCode::kBadFile);
}

TEST(ChatTemplateTest, BadArgumentsAreErrors) {
  EXPECT_FALSE(render_chat_template("x", nlohmann::json::object(), true, nlohmann::json::object()).ok());
  EXPECT_FALSE(render_chat_template("{% if %}", nlohmann::json::array(), true, nlohmann::json::object()).ok());
}

TEST(ChatTemplateTest, StrftimeNowFormatsTheCurrentDate) {
  auto r = render_chat_template("{{ strftime_now('%Y') }}", nlohmann::json::array(), true, nlohmann::json::object());
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  EXPECT_EQ(r.value(), std::to_string(tm.tm_year + 1900));
}

const char* kOwnTemplates = R"JSON({
 "templates": {
  "chatml": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
  "mistral_instruct": "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}",
  "llama2_default_system": "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% elif use_default_system_prompt %}{% set loop_messages = messages %}{% set system_message = 'You are a helpful, respectful and honest assistant.' %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'system' %}{{ '<<SYS>>\\n' + content.strip() + '\\n<</SYS>>\\n\\n' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
  "zephyr": "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}",
  "gemma": "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}",
  "tools_indented": "{{- bos_token }}\n{%- if tools is defined and tools %}\n    {{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}\n    {{- 'You have these tools:\\n' }}\n    {%- for t in tools %}\n        {{- t | tojson(indent=4) }}\n        {{- '\\n\\n' }}\n    {%- endfor %}\n    {{- '<|eot_id|>' }}\n{%- endif %}\n{%- for message in messages %}\n    {%- if message.role == 'assistant' and message.tool_calls is defined %}\n        {%- set call = message.tool_calls[0].function %}\n        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}\n        {{- '{\"name\": \"' + call.name + '\", \"parameters\": ' + call.arguments | tojson + '}' }}\n        {{- '<|eot_id|>' }}\n    {%- else %}\n        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n{%- endif %}\n"
 },
 "runs": [
  {
   "template": "chatml",
   "messages": "system_multi",
   "context": {
    "add_generation_prompt": true,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "messages": [
     {
      "content": "Be brief.",
      "role": "system"
     },
     {
      "content": " Hi! ",
      "role": "user"
     },
     {
      "content": "Hello.",
      "role": "assistant"
     },
     {
      "content": "Bye\n",
      "role": "user"
     }
    ]
   },
   "rendered": "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n Hi! <|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye\n<|im_end|>\n<|im_start|>assistant\n"
  },
  {
   "template": "chatml",
   "messages": "user_multi",
   "context": {
    "add_generation_prompt": false,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "messages": [
     {
      "content": " Hi! ",
      "role": "user"
     },
     {
      "content": "Hello.",
      "role": "assistant"
     },
     {
      "content": "Bye\n",
      "role": "user"
     }
    ]
   },
   "rendered": "<|im_start|>user\n Hi! <|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye\n<|im_end|>\n"
  },
  {
   "template": "mistral_instruct",
   "messages": "user_multi",
   "context": {
    "add_generation_prompt": true,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "messages": [
     {
      "content": " Hi! ",
      "role": "user"
     },
     {
      "content": "Hello.",
      "role": "assistant"
     },
     {
      "content": "Bye\n",
      "role": "user"
     }
    ]
   },
   "rendered": "<s>[INST]  Hi!  [/INST]Hello.</s>[INST] Bye\n [/INST]"
  },
  {
   "template": "mistral_instruct",
   "messages": "bad_order",
   "context": {
    "add_generation_prompt": true,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "messages": [
     {
      "content": "a",
      "role": "user"
     },
     {
      "content": "b",
      "role": "user"
     }
    ]
   },
   "error": "Conversation roles must alternate user/assistant/user/assistant/..."
  },
  {
   "template": "mistral_instruct",
   "messages": "system_multi",
   "context": {
    "add_generation_prompt": true,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "messages": [
     {
      "content": "Be brief.",
      "role": "system"
     },
     {
      "content": " Hi! ",
      "role": "user"
     },
     {
      "content": "Hello.",
      "role": "assistant"
     },
     {
      "content": "Bye\n",
      "role": "user"
     }
    ]
   },
   "error": "Conversation roles must alternate user/assistant/user/assistant/..."
  },
  {
   "template": "llama2_default_system",
   "messages": "system_multi",
   "context": {
    "add_generation_prompt": true,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "messages": [
     {
      "content": "Be brief.",
      "role": "system"
     },
     {
      "content": " Hi! ",
      "role": "user"
     },
     {
      "content": "Hello.",
      "role": "assistant"
     },
     {
      "content": "Bye\n",
      "role": "user"
     }
    ]
   },
   "rendered": "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n Hi! [/INST] Hello. </s><s>[INST] Bye [/INST]"
  },
  {
   "template": "llama2_default_system",
   "messages": "user_multi",
   "context": {
    "add_generation_prompt": true,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "messages": [
     {
      "content": " Hi! ",
      "role": "user"
     },
     {
      "content": "Hello.",
      "role": "assistant"
     },
     {
      "content": "Bye\n",
      "role": "user"
     }
    ],
    "use_default_system_prompt": true
   },
   "rendered": "<s>[INST] <<SYS>>\nYou are a helpful, respectful and honest assistant.\n<</SYS>>\n\n Hi! [/INST] Hello. </s><s>[INST] Bye [/INST]"
  },
  {
   "template": "llama2_default_system",
   "messages": "user_multi",
   "context": {
    "add_generation_prompt": true,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "messages": [
     {
      "content": " Hi! ",
      "role": "user"
     },
     {
      "content": "Hello.",
      "role": "assistant"
     },
     {
      "content": "Bye\n",
      "role": "user"
     }
    ]
   },
   "rendered": "<s>[INST] Hi! [/INST] Hello. </s><s>[INST] Bye [/INST]"
  },
  {
   "template": "zephyr",
   "messages": "system_multi",
   "context": {
    "add_generation_prompt": true,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "messages": [
     {
      "content": "Be brief.",
      "role": "system"
     },
     {
      "content": " Hi! ",
      "role": "user"
     },
     {
      "content": "Hello.",
      "role": "assistant"
     },
     {
      "content": "Bye\n",
      "role": "user"
     }
    ]
   },
   "rendered": "<|system|>\nBe brief.</s>\n<|user|>\n Hi! </s>\n<|assistant|>\nHello.</s>\n<|user|>\nBye\n</s>\n<|assistant|>\n"
  },
  {
   "template": "zephyr",
   "messages": "system_multi",
   "context": {
    "add_generation_prompt": false,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "messages": [
     {
      "content": "Be brief.",
      "role": "system"
     },
     {
      "content": " Hi! ",
      "role": "user"
     },
     {
      "content": "Hello.",
      "role": "assistant"
     },
     {
      "content": "Bye\n",
      "role": "user"
     }
    ]
   },
   "rendered": "<|system|>\nBe brief.</s>\n<|user|>\n Hi! </s>\n<|assistant|>\nHello.</s>\n<|user|>\nBye\n</s>\n"
  },
  {
   "template": "gemma",
   "messages": "user_multi",
   "context": {
    "add_generation_prompt": true,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "messages": [
     {
      "content": " Hi! ",
      "role": "user"
     },
     {
      "content": "Hello.",
      "role": "assistant"
     },
     {
      "content": "Bye\n",
      "role": "user"
     }
    ]
   },
   "rendered": "<s><start_of_turn>user\nHi!<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
  },
  {
   "template": "gemma",
   "messages": "system_multi",
   "context": {
    "add_generation_prompt": true,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "messages": [
     {
      "content": "Be brief.",
      "role": "system"
     },
     {
      "content": " Hi! ",
      "role": "user"
     },
     {
      "content": "Hello.",
      "role": "assistant"
     },
     {
      "content": "Bye\n",
      "role": "user"
     }
    ]
   },
   "error": "System role not supported"
  },
  {
   "template": "tools_indented",
   "messages": "tools",
   "context": {
    "add_generation_prompt": true,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "messages": [
     {
      "content": "Weather in Paris?",
      "role": "user"
     },
     {
      "content": "",
      "role": "assistant",
      "tool_calls": [
       {
        "function": {
         "arguments": {
          "city": "Paris",
          "unit": "célsius"
         },
         "name": "get_weather"
        },
        "type": "function"
       }
      ]
     },
     {
      "content": "{\"t\": 21}",
      "role": "tool"
     },
     {
      "content": "Thanks",
      "role": "user"
     }
    ],
    "tools": [
     {
      "function": {
       "description": "Get the weather",
       "name": "get_weather",
       "parameters": {
        "properties": {
         "city": {
          "type": "string"
         }
        },
        "required": [
         "city"
        ],
        "type": "object"
       }
      },
      "type": "function"
     }
    ]
   },
   "rendered": "<s><|start_header_id|>system<|end_header_id|>\n\nYou have these tools:\n{\n    \"function\": {\n        \"description\": \"Get the weather\",\n        \"name\": \"get_weather\",\n        \"parameters\": {\n            \"properties\": {\n                \"city\": {\n                    \"type\": \"string\"\n                }\n            },\n            \"required\": [\n                \"city\"\n            ],\n            \"type\": \"object\"\n        }\n    },\n    \"type\": \"function\"\n}\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWeather in Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"unit\": \"célsius\"}}<|eot_id|><|start_header_id|>tool<|end_header_id|>\n\n{\"t\": 21}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nThanks<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
  },
  {
   "template": "tools_indented",
   "messages": "user_multi",
   "context": {
    "add_generation_prompt": false,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "messages": [
     {
      "content": " Hi! ",
      "role": "user"
     },
     {
      "content": "Hello.",
      "role": "assistant"
     },
     {
      "content": "Bye\n",
      "role": "user"
     }
    ]
   },
   "rendered": "<s><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
  },
  {
   "template": "fixture:qwen3",
   "messages": "qwen_tools",
   "context": {
    "add_generation_prompt": true,
    "eos_token": "<|im_end|>",
    "messages": [
     {
      "content": "You are Qwen.",
      "role": "system"
     },
     {
      "content": "Weather in Paris?",
      "role": "user"
     },
     {
      "content": "<think>\nNeed the tool.\n</think>\n\nLet me check.",
      "role": "assistant",
      "tool_calls": [
       {
        "function": {
         "arguments": {
          "city": "Paris"
         },
         "name": "get_weather"
        },
        "type": "function"
       },
       {
        "function": {
         "arguments": "{\"tz\": \"CET\"}",
         "name": "get_time"
        }
       }
      ]
     },
     {
      "content": "{\"t\": 21}",
      "role": "tool"
     },
     {
      "content": "12:00",
      "role": "tool"
     },
     {
      "content": "It is 21C.",
      "reasoning_content": "Tool said 21.",
      "role": "assistant"
     },
     {
      "content": "<tool_response>x</tool_response>",
      "role": "user"
     }
    ],
    "pad_token": "<|endoftext|>",
    "tools": [
     {
      "function": {
       "description": "Get the weather",
       "name": "get_weather",
       "parameters": {
        "properties": {
         "city": {
          "type": "string"
         }
        },
        "required": [
         "city"
        ],
        "type": "object"
       }
      },
      "type": "function"
     }
    ]
   },
   "rendered": "<|im_start|>system\nYou are Qwen.\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{\"function\": {\"description\": \"Get the weather\", \"name\": \"get_weather\", \"parameters\": {\"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"], \"type\": \"object\"}}, \"type\": \"function\"}\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n<think>\nNeed the tool.\n</think>\n\nLet me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"tz\": \"CET\"}}\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n{\"t\": 21}\n</tool_response>\n<tool_response>\n12:00\n</tool_response><|im_end|>\n<|im_start|>assistant\n<think>\nTool said 21.\n</think>\n\nIt is 21C.<|im_end|>\n<|im_start|>user\n<tool_response>x</tool_response><|im_end|>\n<|im_start|>assistant\n"
  },
  {
   "template": "fixture:qwen3",
   "messages": "qwen_think",
   "context": {
    "add_generation_prompt": true,
    "eos_token": "<|im_end|>",
    "messages": [
     {
      "content": "Q1",
      "role": "user"
     },
     {
      "content": "<think>\nR1\n</think>\n\nA1",
      "role": "assistant"
     },
     {
      "content": "Q2",
      "role": "user"
     },
     {
      "content": "<think>R2</think>A2",
      "role": "assistant"
     }
    ],
    "pad_token": "<|endoftext|>"
   },
   "rendered": "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n<think>\nR2\n</think>\n\nA2<|im_end|>\n<|im_start|>assistant\n"
  },
  {
   "template": "fixture:qwen3",
   "messages": "qwen_think",
   "context": {
    "add_generation_prompt": true,
    "enable_thinking": false,
    "eos_token": "<|im_end|>",
    "messages": [
     {
      "content": "Q1",
      "role": "user"
     },
     {
      "content": "<think>\nR1\n</think>\n\nA1",
      "role": "assistant"
     },
     {
      "content": "Q2",
      "role": "user"
     },
     {
      "content": "<think>R2</think>A2",
      "role": "assistant"
     }
    ],
    "pad_token": "<|endoftext|>"
   },
   "rendered": "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n<think>\nR2\n</think>\n\nA2<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
  },
  {
   "template": "fixture:qwen3",
   "messages": "qwen_think",
   "context": {
    "add_generation_prompt": false,
    "eos_token": "<|im_end|>",
    "messages": [
     {
      "content": "Q1",
      "role": "user"
     },
     {
      "content": "<think>\nR1\n</think>\n\nA1",
      "role": "assistant"
     },
     {
      "content": "Q2",
      "role": "user"
     },
     {
      "content": "<think>R2</think>A2",
      "role": "assistant"
     }
    ],
    "pad_token": "<|endoftext|>"
   },
   "rendered": "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n<think>\nR2\n</think>\n\nA2<|im_end|>\n"
  }
 ]
})JSON";

TEST(ChatTemplateTest, OwnTemplatesMatchJinja2) {
  const auto own = nlohmann::json::parse(kOwnTemplates);
  const auto qwen3 = load_json(tokenizer_dir("qwen3") + "/tokenizer_config.json");
  int checked = 0;
  for (const auto& run : own.at("runs")) {
    const std::string name = run.at("template").get<std::string>();
    SCOPED_TRACE(name + " / " + run.at("messages").get<std::string>());
    const std::string source = name == "fixture:qwen3" ? qwen3.at("chat_template").get<std::string>()
                                                        : own.at("templates").at(name).get<std::string>();
    auto tmpl = ChatTemplate::compile(source);
    ASSERT_TRUE(tmpl.ok()) << tmpl.error().to_string();
    auto r = tmpl->render(run.at("context"));
    if (run.contains("rendered")) {
      ASSERT_TRUE(r.ok()) << r.error().to_string();
      EXPECT_EQ(r.value(), run.at("rendered").get<std::string>());
    } else {
      ASSERT_FALSE(r.ok()) << "rendered: " << r.value();
      EXPECT_NE(r.error().message.find(run.at("error").get<std::string>()), std::string::npos) << r.error().message;
    }
    ++checked;
  }
  EXPECT_EQ(checked, 18);
}

// Not a benchmark: a loose bound that catches accidental quadratic behaviour
// in the per-request path (render is called once per chat request).
TEST(ChatTemplateTest, RenderingALongConversationStaysCheap) {
  const auto config = load_json(tokenizer_dir("qwen3") + "/tokenizer_config.json");
  auto tmpl = ChatTemplate::compile(config.at("chat_template").get<std::string>());
  ASSERT_TRUE(tmpl.ok());
  nlohmann::json messages = nlohmann::json::array();
  for (int i = 0; i < 2000; ++i) {
    messages.push_back({{"role", i % 2 == 0 ? "user" : "assistant"}, {"content", std::string(500, 'a' + i % 26)}});
  }
  nlohmann::json ctx = {{"messages", messages}, {"add_generation_prompt", true}};
  auto start = std::chrono::steady_clock::now();
  auto r = tmpl->render(ctx);
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_GT(r.value().size(), 2000u * 500u);
  EXPECT_LT(ms, 2000.0);
}

}  // namespace
}  // namespace myriad
