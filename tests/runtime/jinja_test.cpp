// Unit tests of the Jinja evaluator behind ChatTemplate: loops, scoping,
// namespace, slicing, operators, filters, tests, methods, whitespace control,
// Python printing, errors with positions, and the limits that keep hostile
// templates from crashing or exhausting the process.
//
// The expected strings of kCases were produced by Jinja2 3.1.6 configured as
// transformers configures it (ImmutableSandboxedEnvironment, trim_blocks,
// lstrip_blocks, loopcontrols, transformers' tojson and raise_exception) on
// the context kContext; they are not outputs of this implementation.
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "runtime/chat_template.h"

namespace myriad {
namespace {

const char* kContext = R"({"d": {"a": 1, "b": [1, 2]}, "f": 1.5, "messages": [{"content": "sys", "role": "system"}, {"content": "hi", "role": "user"}, {"content": "yo", "role": "assistant"}, {"content": "more", "role": "user"}], "n": null, "s": "Hello World", "xs": [1, 2, 3]})";

struct Case {
  const char* name;
  const char* source;
  const char* expected;
};

const Case kCases[] = {
    {"ForLoopVariables",
     R"({% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %})",
     R"(1032TrueFalse3;2121FalseFalse3;3210FalseTrue3;)"},
    {"ForLoopFilterAndElse",
     R"({% for m in xs if m > 1 %}{{ loop.index }}/{{ loop.length }} {% else %}none{% endfor %}|{% for m in [] %}x{% else %}empty{% endfor %})",
     R"(1/2 2/2 |empty)"},
    {"ForLoopPrevNext",
     R"({% for x in xs %}{{ loop.previtem }}<{{ x }}>{{ loop.nextitem }} {% endfor %})",
     R"(<1>2 1<2>3 2<3> )"},
    {"ForLoopUnpackAndDict",
     R"({% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k in d %}[{{ k }}]{% endfor %})",
     R"(a=1;b=[1, 2];[a][b])"},
    {"ForLoopBreakContinue",
     R"({% for x in range(10) %}{% if x is odd %}{% continue %}{% endif %}{% if x > 6 %}{% break %}{% endif %}{{ x }}{% endfor %})",
     R"(0246)"},
    {"ForLoopScopeDoesNotLeak",
     R"({% set x = 'outer' %}{% for i in [1,2] %}{% if i == 2 %}[{{ x }}]{% endif %}{% set x = i %}{% endfor %}<{{ x }}>)",
     R"([outer]<outer>)"},
    {"IfSetLeaksToEnclosingScope",
     R"({% if true %}{% set y = 5 %}{% endif %}{{ y }})",
     R"(5)"},
    {"IfElifElse",
     R"({% for v in [0, 1, 2] %}{% if v == 0 %}zero{% elif v == 1 %}one{% else %}many{% endif %} {% endfor %})",
     R"(zero one many )"},
    {"NamespaceAcrossLoop",
     R"({% set ns = namespace(total=0, last=none) %}{% for x in xs %}{% set ns.total = ns.total + x %}{% set ns.last = x %}{% endfor %}{{ ns.total }} {{ ns.last }})",
     R"(6 3)"},
    {"NamespaceReverseScan",
     R"({% set ns = namespace(idx=-1) %}{% for m in messages[::-1] %}{% if ns.idx == -1 and m.role == 'user' %}{% set ns.idx = (messages|length - 1) - loop.index0 %}{% endif %}{% endfor %}{{ ns.idx }})",
     R"(3)"},
    {"Slicing",
     R"({{ xs[1:] }} {{ xs[:-1] }} {{ xs[::-1] }} {{ xs[::2] }} {{ xs[-2:] }} {{ xs[5:1:-1] }} {{ xs[1:2:0 or 1] }} {{ s[1:4] }} {{ s[::-1] }} {{ 'héllo'[1:3] }})",
     R"([2, 3] [1, 2] [3, 2, 1] [1, 3] [2, 3] [3] [2] ell dlroW olleH él)"},
    {"Subscripts",
     R"({{ xs[0] }} {{ xs[-1] }} [{{ xs[10] }}] {{ xs.1 }} {{ messages[0]['role'] }} {{ messages[-1].content }} {{ d['a'] }} {{ d.a }})",
     R"(1 3 [] 2 system more 1 1)"},
    {"Arithmetic",
     R"({{ 1/2 }} {{ 3//2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ -7 // 2 }} {{ 2**10 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ 10 / 4 }} {{ 1 + 2 * 3 - 4 }} {{ (1 + 2) * 3 }} {{ -2 ** 2 }})",
     R"(0.5 1 2 -2 -4 1024 3.0 0.5 2.5 3 9 4)"},
    {"FloatRepr",
     R"({{ 1.0 }} {{ 2.50 }} {{ 1e20 }} {{ 1e16 }} {{ 1e15 }} {{ 1e-5 }} {{ 0.0001 }} {{ 0.1 + 0.2 }} {{ -0.0 }} {{ 123456789.123 }})",
     R"(1.0 2.5 1e+20 1e+16 1000000000000000.0 1e-05 0.0001 0.30000000000000004 -0.0 123456789.123)"},
    {"Comparisons",
     R"({{ 1 == 1.0 }} {{ 1 == true }} {{ 'a' < 'b' }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ [1,2] == [1,2] }} {{ [1,2] < [1,3] }} {{ 'a' != 'a' }} {{ none == none }})",
     R"(True True True True False True True False True)"},
    {"Membership",
     R"({{ 'x' in 'xyz' }} {{ 2 in xs }} {{ 'a' in d }} {{ 5 not in xs }} {{ not 'q' in s }} {{ 'c' in undefined_thing }})",
     R"(True True True True True False)"},
    {"BooleanOperatorsReturnOperands",
     R"({{ n or 'dflt' }} {{ xs and 'yes' }} {{ 0 or '' or 'last' }} {{ 1 and 0 }} {{ not none }} {{ 1 if n else 2 }} [{{ 'x' if false }}])",
     R"(dflt yes last 0 True 2 [])"},
    {"StringConcatenation",
     R"({{ 'a' ~ 1 ~ none ~ true ~ undefined_thing }} {{ 'a' + 'b' }} {{ 'ab' * 3 }} {{ [1] + [2] }} {{ 'x' 'y' }})",
     R"(a1NoneTrue ab ababab [1, 2] xy)"},
    {"StringEscapes",
     R"({{ '\n\t\x41\u00e9\\ \d \'q\' "d"' }}|{{ "it's" }})",
     R"(
	Aé\ \d 'q' "d"|it's)"},
    {"PythonRepr",
     R"({{ [1, 'a', "b'c", none, 1.5, true] }} {{ {'k': [1, {'z': none}]} }} {{ ['\n', '\x00', 'say "hi"', "both ' \""] }} {{ (1, 2) }} {{ (1,) }} {{ d | items | list }})",
     R"([1, 'a', "b'c", None, 1.5, True] {'k': [1, {'z': None}]} ['\n', '\x00', 'say "hi"', 'both \' "'] (1, 2) (1,) [('a', 1), ('b', [1, 2])])"},
    {"NoneAndBooleansPrintLikePython",
     R"({{ none }} {{ None }} {{ true }} {{ False }} {{ n }})",
     R"(None None True False None)"},
    {"UndefinedPrintsEmpty",
     R"([{{ nope }}][{{ d.nope }}][{{ nope | length }}][{{ nope | default('dflt') }}][{{ d.nope is defined }}][{{ nope is undefined }}])",
     R"([][][0][dflt][False][True])"},
    {"WhitespaceControl",
     R"({%- for x in xs -%}
  {{ x }}
{%- endfor -%}
|  {{- ' a ' -}}  |)",
     R"(123| a |)"},
    {"TrimAndLstripBlocks",
     R"(a
  {% if true %}
  b
  {% endif %}
c
    {# comment #}
d)",
     R"(a
  b
c
d)"},
    {"PlusDisablesLstrip",
     R"(x
  {%+ if true %}y{% endif %}
  {%- if true %}z{% endif %})",
     R"(x
  yz)"},
    {"TrailingNewlineDropped",
     R"(line
)",
     R"(line)"},
    {"Raw",
     R"({% raw %}{{ not_a_var }} {% if %}{% endraw %}!)",
     R"({{ not_a_var }} {% if %}!)"},
    {"Comments",
     R"(a{# hidden {{ x }} #}b{#- strip -#}   c)",
     R"(abc)"},
    {"SetForms",
     R"({% set a, b = 1, 2 %}{{ a }}{{ b }} {% set t = (3, 4) %}{{ t[1] }} {% set blk %}inner {{ 1 + 1 }}{% endset %}[{{ blk }}])",
     R"(12 4 [inner 2])"},
    {"FilterBlock",
     R"({% filter upper %}abc {{ s }}{% endfilter %})",
     R"(ABC HELLO WORLD)"},
    {"Macros",
     R"({% macro f(a, b=2) %}{{ a }}-{{ b }}{% endmacro %}{{ f(1) }} {{ f(1, b=3) }} {{ f(b=4, a=0) }} [{{ f() }}])",
     R"(1-2 1-3 0-4 [-2])"},
    {"MacroCallsMacro",
     R"({% macro inner(y) %}<{{ y }}>{% endmacro %}{% macro outer(x) %}[{{ inner(x) }}]{% endmacro %}{{ outer(1) }})",
     R"([<1>])"},
    {"WithBlock",
     R"({% with a = 1, b = 'x' %}{{ a }}{{ b }}{% endwith %}[{{ a }}])",
     R"(1x[])"},
    {"Range",
     R"({{ range(3) | list }} {{ range(1, 10, 3) | list }} {{ range(5, 0, -2) | list }} {{ range(0) | list }})",
     R"([0, 1, 2] [1, 4, 7] [5, 3, 1] [])"},
    {"StringFilters",
     R"({{ s | upper }} {{ s | lower }} {{ 'hello wORLD' | title }} {{ 'hELLO' | capitalize }} {{ s | replace('o', '0') }} {{ s | replace('l', 'L', 1) }} {{ s | length }} {{ s | reverse }} {{ s | wordcount }} [{{ '  pad  ' | trim }}] [{{ 'xxaxx' | trim('x') }}] [{{ s | center(15) }}])",
     R"(HELLO WORLD hello world Hello World Hello Hell0 W0rld HeLlo World 11 dlroW olleH 2 [pad] [a] [  Hello World  ])"},
    {"ListFilters",
     R"({{ xs | join(', ') }} {{ xs | join }} {{ xs | first }} {{ xs | last }} {{ xs | length }} {{ xs | count }} {{ xs | sum }} {{ xs | max }} {{ xs | min }} {{ xs | reverse | list }} {{ 'abc' | list }} {{ d | list }})",
     R"(1, 2, 3 123 1 3 3 3 6 3 1 [3, 2, 1] ['a', 'b', 'c'] ['a', 'b'])"},
    {"SortUniqueDictsort",
     R"({{ ['b', 'A', 'c'] | sort }} {{ [3, 1, 2] | sort(reverse=true) }} {{ ['b', 'A', 'a'] | unique | list }} {{ {'b': 1, 'a': 2} | dictsort }} {{ {'b': 1, 'a': 2} | dictsort(by='value') }} {{ messages | sort(attribute='role') | map(attribute='content') | join(',') }})",
     R"(['A', 'b', 'c'] [3, 2, 1] ['b', 'A'] [('a', 2), ('b', 1)] [('b', 1), ('a', 2)] yo,sys,hi,more)"},
    {"MapSelectReject",
     R"({{ xs | map('string') | join('-') }} {{ messages | map(attribute='role') | list }} {{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | list }} {{ messages | rejectattr('role', 'eq', 'user') | map(attribute='content') | first }} {{ xs | select('odd') | list }} {{ xs | reject('even') | list }} {{ [0, 1, '', 'a'] | select | list }})",
     R"(1-2-3 ['system', 'user', 'assistant', 'user'] ['hi', 'more'] sys [1, 3] [1, 3] [1, 'a'])"},
    {"NumberFilters",
     R"({{ '3' | int + 1 }} {{ 'x' | int }} {{ 'x' | int(7) }} {{ 3.7 | int }} {{ '0x1F' | int(base=16) }} {{ '4.5' | float }} {{ 'x' | float }} {{ -3 | abs }} {{ 2.5 | round }} {{ 3.14159 | round(2) }} {{ 2.1 | round(method='ceil') }} {{ true | int }})",
     R"(4 0 7 3 31 4.5 0.0 3 2.0 3.14 3.0 1)"},
    {"DefaultFilter",
     R"({{ nope | default('a') }} {{ '' | default('b') }}|{{ '' | default('c', true) }} {{ none | default('d') }} {{ 0 | d('e', boolean=true) }})",
     R"(a |c None e)"},
    {"Indent",
     R"({{ 'hello\nworld' | indent(2) }}|{{ 'a\n\nb' | indent(2, true) }}|{{ 'a\nb' | indent(first=true, blank=true) }}|{{ 'a\nb' | indent('> ') }})",
     R"(hello
  world|  a

  b|    a
    b|a
> b)"},
    {"ToJson",
     R"({{ xs | tojson }}|{{ {'a': [1, {'b': 2}]} | tojson(indent=2) }}|{{ 'é\u0001"\\</>' | tojson }}|{{ d | tojson }}|{{ [] | tojson(indent=2) }}|{{ 1.5 | tojson }}|{{ none | tojson }}|{{ {'z': 1, 'a': 2} | tojson(sort_keys=true) }}|{{ 'é' | tojson(ensure_ascii=true) }}|{{ {'a': [1, 2]} | tojson(separators=(',', ':')) }}|{{ 'x' | tojson(indent=0) }})",
     R"([1, 2, 3]|{
  "a": [
    1,
    {
      "b": 2
    }
  ]
}|"é\u0001\"\\</>"|{"a": 1, "b": [1, 2]}|[]|1.5|null|{"a": 2, "z": 1}|"\u00e9"|{"a":[1,2]}|"x")"},
    {"Tests",
     R"({{ n is none }} {{ s is string }} {{ xs is iterable }} {{ d is mapping }} {{ 1 is number }} {{ true is number }} {{ true is boolean }} {{ xs is sequence }} {{ f is float }} {{ 1 is integer }} {{ true is integer }} {{ n is not none }} {{ 3 is divisibleby 3 }} {{ 2 is even }} {{ 'abc' is lower }} {{ 'ABC' is upper }} {{ 1 is eq 1 }} {{ 1 is equalto 2 }} {{ 2 is gt 1 }} {{ 2 is in xs }} {{ false is false }} {{ true is true }} {{ 0 is false }})",
     R"(True True True True True True True True True True False False True True True True True False True True True True False)"},
    {"StrMethods",
     R"({{ '  a b  '.split() }} {{ 'a,b,,c'.split(',') }} {{ 'a,b,c'.split(',', 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ 'xxaxx'.strip('x') }} [{{ ' x '.lstrip() }}] {{ 'aXbX'.rstrip('X') }} {{ 'Hello'.startswith(('He', 'x')) }} {{ 'Hello'.endswith('lo') }} {{ 'a-b'.replace('-', '+') }} {{ 'ab cd'.title() }} {{ "it's".title() }} {{ ', '.join(['a', 'b']) }} {{ 'x'.upper() }} {{ 'ABC'.lower() }} {{ 'abcabc'.find('c') }} {{ 'abcabc'.count('bc') }} {{ 'a\nb\r\nc'.splitlines() }} {{ 'hello'.capitalize() }})",
     R"(['a', 'b'] ['a', 'b', '', 'c'] ['a', 'b,c'] ['a,b', 'c'] a [x ] aXb True True a+b Ab Cd It'S a, b X abc 2 2 ['a', 'b', 'c'] Hello)"},
    {"DictMethods",
     R"({{ d.items() | list }} {{ d.keys() | list }} {{ d.values() | list }} {{ d.get('a') }} {{ d.get('z', 5) }} {{ d.get('z') }})",
     R"([('a', 1), ('b', [1, 2])] ['a', 'b'] [1, [1, 2]] 1 5 None)"},
    {"Unicode",
     R"({{ 'ß' | upper }} {{ 'ÉCOLE' | lower }} {{ 'ünïcode' | length }} {{ 'héllo'[1] }} {{ 'héllo'[::-1] }} {{ '😀x' | length }})",
     R"(SS école 7 é olléh 2)"},
    {"PercentFormat",
     R"({{ '%s and %s' % ('a', 1) }} {{ '%d%%' % 50 }} {{ '%05.2f' % 3.14159 }} {{ '%r' % 'q' }})",
     R"(a and 1 50% 03.14 'q')"},
    {"IteratorsAreAlwaysTruthy",
     R"({% if messages | selectattr('role', 'equalto', 'nobody') %}T{% else %}F{% endif %}{% if messages | selectattr('role', 'equalto', 'nobody') | list %}T{% else %}F{% endif %}{% if [] | map('upper') %}T{% endif %}{% if xs | reverse %}R{% endif %})",
     R"(TFTR)"},
    {"TupleArithmetic",
     R"({{ (1, 2) * 2 }} {{ (1,) + (2,) }} {{ [0] * 3 }})",
     R"((1, 2, 1, 2) (1, 2) [0, 0, 0])"},
    {"UndefinedIsASequence",
     R"({{ nope is sequence }} {{ nope is iterable }} {{ nope is mapping }})",
     R"(True True False)"},
};

struct ErrorCase {
  const char* name;
  const char* source;
  const char* message_part;
};

const ErrorCase kErrorCases[] = {
    {"RaiseException", R"({{ raise_exception('Conversation roles must alternate') }})", R"(Conversation roles must alternate)"},
    {"AttributeOfUndefined", R"({{ nope.foo }})", R"('nope' is undefined)"},
    {"ArithmeticOnUndefined", R"({{ nope + 1 }})", R"('nope' is undefined)"},
    {"StrPlusInt", R"({{ 'a' + 1 }})", R"(can only concatenate str)"},
    {"NotIterable", R"({% for x in 5 %}{% endfor %})", R"(not iterable)"},
    {"DivisionByZero", R"({{ 1 / 0 }})", R"(division by zero)"},
    {"NonNamespaceAttributeSet", R"({% set x = 1 %}{% set x.y = 2 %})", R"(non-namespace)"},
};

Result<std::string> render(std::string_view source, const nlohmann::json& context) {
  auto t = ChatTemplate::compile(source);
  if (!t.ok()) return t.error();
  return t->render(context);
}

TEST(JinjaTest, MatchesJinja2OnEveryCase) {
  const auto context = nlohmann::json::parse(kContext);
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    auto r = render(c.source, context);
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    EXPECT_EQ(r.value(), c.expected);
  }
}

TEST(JinjaTest, RuntimeErrorsCarryTheirMessageAndPosition) {
  const auto context = nlohmann::json::parse(kContext);
  for (const ErrorCase& c : kErrorCases) {
    SCOPED_TRACE(c.name);
    auto r = render(c.source, context);
    ASSERT_FALSE(r.ok()) << "rendered: " << r.value();
    EXPECT_NE(r.error().message.find(c.message_part), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("chat template line 1, column "), std::string::npos) << r.error().message;
  }
}

TEST(JinjaTest, RaiseExceptionPointsAtTheCall) {
  auto r = render("line one\n{% if true %}\n  {{ raise_exception('bad roles') }}{% endif %}", nlohmann::json::object());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find("line 3, column "), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("bad roles"), std::string::npos) << r.error().message;
}

struct SyntaxCase {
  const char* source;
  const char* position;  // "line L, column C"
  const char* message_part;
};

TEST(JinjaTest, MalformedTemplatesFailToCompileWithPosition) {
  const SyntaxCase cases[] = {
      {"{{ 1 + }}", "line 1, column 8", "expected an expression"},
      {"ab\n{% if x %}never closed", "line 2, column", "never closed"},
      {"{% for x in xs %}{% endif %}", "line 1, column 21", "unknown or misplaced tag 'endif'"},
      {"{{ 'unterminated }}", "line 1, column 4", "unterminated string"},
      {"x\n  {{ a | no_such_filter }}", "line 2, column 10", "no filter named 'no_such_filter'"},
      {"{{ a is no_such_test }}", "line 1, column 9", "no test named 'no_such_test'"},
      {"{% include 'other.j2' %}", "line 1, column 4", "not supported"},
      {"{# unclosed comment", "line 1, column 1", "unclosed comment"},
      {"{{ x", "line 1, column 5", "expected '}}'"},
      {"{% break %}", "line 1, column 4", "outside of a for loop"},
      {"{{ a ] }}", "line 1, column 6", "unexpected ']'"},
      {"{{ 99999999999999999999 }}", "line 1, column 4", "too large"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.source);
    auto t = ChatTemplate::compile(c.source);
    ASSERT_FALSE(t.ok());
    EXPECT_NE(t.error().message.find(c.position), std::string::npos) << t.error().message;
    EXPECT_NE(t.error().message.find(c.message_part), std::string::npos) << t.error().message;
  }
}

TEST(JinjaTest, ErrorsAndOutputAreValidUtf8EvenForMalformedBytes) {
  // A stray byte of a multi-byte character inside a tag, and invalid UTF-8 text.
  auto bad = ChatTemplate::compile("{{ \xC3 }}");
  ASSERT_FALSE(bad.ok());
  EXPECT_NO_THROW((void)nlohmann::json(bad.error().message).dump());
  EXPECT_NE(bad.error().message.find("unexpected character 0xc3"), std::string::npos) << bad.error().message;
  auto t = ChatTemplate::compile("a\xFF{{ raise_exception('b\xFE') }}");
  ASSERT_TRUE(t.ok());
  auto r = t->render(nlohmann::json::object());
  ASSERT_FALSE(r.ok());
  EXPECT_NO_THROW((void)nlohmann::json(r.error().message).dump());
  auto text = ChatTemplate::compile("a\xFF" "b");
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(text->render(nlohmann::json::object()).value(), "a\xEF\xBF\xBD" "b");  // U+FFFD
}

TEST(JinjaTest, ContextMustBeAnObject) {
  auto t = ChatTemplate::compile("x");
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->render(nlohmann::json::array()).ok());
}

TEST(JinjaTest, JsonValuesMapToPythonValues) {
  nlohmann::json ctx = {{"big", 18446744073709551615ull}, {"neg", -5}, {"flt", 0.25}, {"nul", nullptr},
                        {"t", true}, {"arr", {1, "two", nullptr}}, {"obj", {{"k", {{"n", 1}}}}}};
  auto r = render("{{ big > 0 }} {{ neg }} {{ flt }} {{ nul }} {{ t }} {{ arr }} {{ obj.k.n }} {{ obj | tojson }}", ctx);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r.value(), "True -5 0.25 None True [1, 'two', None] 1 {\"k\": {\"n\": 1}}");
}

TEST(JinjaTest, OrderedJsonKeepsKeyOrderLikePythonDicts) {
  auto t = ChatTemplate::compile("{{ d | tojson }} {% for k in d %}{{ k }}{% endfor %} {{ d }}");
  ASSERT_TRUE(t.ok());
  auto ordered = nlohmann::ordered_json::parse(R"({"d": {"z": 1, "a": {"y": 2, "b": 3}}})");
  auto r = t->render_ordered(ordered);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r.value(), R"({"z": 1, "a": {"y": 2, "b": 3}} za {'z': 1, 'a': {'y': 2, 'b': 3}})");
  auto sorted = t->render(nlohmann::json::parse(R"({"d": {"z": 1, "a": {"y": 2, "b": 3}}})"));
  ASSERT_TRUE(sorted.ok());
  EXPECT_EQ(sorted.value(), R"({"a": {"b": 3, "y": 2}, "z": 1} az {'a': {'b': 3, 'y': 2}, 'z': 1})");
}

TEST(JinjaTest, CompiledTemplateRendersConcurrently) {
  auto t = ChatTemplate::compile(
      "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{{ m }}{% endfor %}={{ ns.n }}");
  ASSERT_TRUE(t.ok());
  std::vector<std::thread> threads;
  std::vector<std::string> outputs(8);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      nlohmann::json ctx = {{"messages", std::vector<int>(static_cast<std::size_t>(i), i)}};
      for (int k = 0; k < 200; ++k) {
        auto r = t->render(ctx);
        outputs[static_cast<std::size_t>(i)] = r.ok() ? r.value() : r.error().message;
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(outputs[static_cast<std::size_t>(i)], std::string(static_cast<std::size_t>(i), static_cast<char>('0' + i)) + "=" + std::to_string(i));
  }
}

// ---- hostile templates: every one must end in an Error, never a crash or a hang ----

TEST(JinjaTest, DeepExpressionNestingIsRefused) {
  std::string src = "{{ " + std::string(100000, '(') + "1" + std::string(100000, ')') + " }}";
  auto t = ChatTemplate::compile(src);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().code, ErrorCode::kResourceExhausted);
  std::string nots = "{{ " ;
  for (int i = 0; i < 100000; ++i) nots += "not ";
  EXPECT_FALSE(ChatTemplate::compile(nots + "x }}").ok());
  std::string negs = "{{ " + std::string(100000, '-') + "1 }}";
  EXPECT_FALSE(ChatTemplate::compile(negs).ok());
}

TEST(JinjaTest, DeepBlockNestingIsRefused) {
  std::string src;
  for (int i = 0; i < 50000; ++i) src += "{% if true %}";
  auto t = ChatTemplate::compile(src);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().code, ErrorCode::kResourceExhausted);
}

TEST(JinjaTest, ModerateNestingIsFine) {
  std::string src;
  for (int i = 0; i < 30; ++i) src += "{% if true %}(";
  src += "{{ ((((1)))) }}";
  for (int i = 0; i < 30; ++i) src += "){% endif %}";
  auto r = render(src, nlohmann::json::object());
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r.value(), std::string(30, '(') + "1" + std::string(30, ')'));
}

TEST(JinjaTest, RunawayWorkIsStopped) {
  const char* hostile[] = {
      "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",                       // infinite recursion
      "{% macro f(n) %}{% if n < 60 %}{{ f(n + 1) }}{{ f(n + 1) }}{% endif %}{% endmacro %}{{ f(0) }}",  // 2^60 calls
      "{% for i in range(100000000000) %}{% endfor %}",                                  // huge range
      "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(10) %}{% endfor %}{% endfor %}{% endfor %}",
      "{{ 'a' * 100000000000 }}",                                                         // huge string
      "{% set ns = namespace(s='ab') %}{% for i in range(100) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
      "{% set ns = namespace(s='x' * 1000000) %}{% for i in range(100000) %}{% set t = ns.s ~ i %}{% endfor %}",
      "{{ [1] * 10000000000 }}",
      "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",  // 100 MB of output
  };
  ChatTemplateLimits limits;  // smaller than the defaults to keep the test fast
  limits.max_output_bytes = 16u << 20;
  limits.max_loop_iterations = 200'000;
  for (const char* src : hostile) {
    SCOPED_TRACE(src);
    auto t = ChatTemplate::compile(src, limits);
    ASSERT_TRUE(t.ok()) << t.error().to_string();
    auto r = t->render(nlohmann::json::object());
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::kResourceExhausted) << r.error().to_string();
  }
}

TEST(JinjaTest, CyclesAndDeepValuesAreSafe) {
  // A namespace that contains itself prints with "..." and is freed after the
  // render (ASan's leak checker would report the cycle otherwise).
  // (Expected text from Jinja2.)
  auto cyc = render("{% set ns = namespace(a=1) %}{% set ns.me = ns %}{% set ns.l = [ns] %}{{ ns.me.me.a }}"
                    "{{ ns | string }}|{{ ns }}",
                    nlohmann::json::object());
  ASSERT_TRUE(cyc.ok()) << cyc.error().to_string();
  EXPECT_EQ(cyc.value(),
            "1<Namespace {'a': 1, 'me': <Namespace {...}>, 'l': [<Namespace {...}>]}>|"
            "<Namespace {'a': 1, 'me': <Namespace {...}>, 'l': [<Namespace {...}>]}>");
  // Shared sub-values: 2^200 to print, refused when stored.
  auto dag = render("{% set ns = namespace(x=1) %}{% for i in range(200) %}{% set ns.x = [ns.x, ns.x] %}{% endfor %}"
                    "{{ ns.x }}",
                    nlohmann::json::object());
  ASSERT_FALSE(dag.ok());
  EXPECT_EQ(dag.error().code, ErrorCode::kResourceExhausted) << dag.error().to_string();
  // Printing a long namespace chain stops instead of recursing without bound.
  auto chain = render("{% set ns = namespace(h=none) %}{% for i in range(5000) %}{% set n = namespace(next=ns.h) %}"
                      "{% set ns.h = n %}{% endfor %}{{ '...' in (ns.h | string) }}",
                      nlohmann::json::object());
  ASSERT_TRUE(chain.ok()) << chain.error().to_string();
  EXPECT_EQ(chain.value(), "True");
  // Chains a million long, built across loop iterations, are refused or freed
  // without recursion.
  const char* chains[] = {
      "{% set ns = namespace(x=none) %}{% for i in range(1000000) %}{% set ns.x = [ns.x] %}{% endfor %}",
      "{% set ns = namespace(h=none) %}{% for i in range(100000) %}{% set n = namespace(next=ns.h) %}"
      "{% set ns.h = n %}{% endfor %}{{ ns.h.next.next is defined }}",
      "{% set ns = namespace(h=none) %}{% for i in range(100000) %}{% set n = namespace() %}{% set n.next = ns.h %}"
      "{% set ns.h = [n] %}{% endfor %}{{ ns.h | length }}",
  };
  for (const char* src : chains) {
    SCOPED_TRACE(src);
    auto r = render(src, nlohmann::json::object());
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, ErrorCode::kResourceExhausted) << r.error().to_string();
    }
  }
  std::string deep_json(100000, '[');
  deep_json += std::string(100000, ']');
  auto t = ChatTemplate::compile("{{ x }}");
  ASSERT_TRUE(t.ok());
  auto r = t->render({{"x", nlohmann::json::parse(deep_json)}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("nested deeper"), std::string::npos) << r.error().message;
}

TEST(JinjaTest, IntegerOverflowIsAnErrorNotUndefinedBehaviour) {
  for (const char* src : {"{{ 9223372036854775807 + 1 }}", "{{ 2 ** 64 }}", "{{ -9223372036854775807 - 2 }}",
                          "{{ 4611686018427387904 * 4 }}"}) {
    SCOPED_TRACE(src);
    auto r = render(src, nlohmann::json::object());
    EXPECT_FALSE(r.ok());
  }
}

}  // namespace
}  // namespace myriad
