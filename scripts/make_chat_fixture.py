#!/usr/bin/env python3
"""Golden fixture for the Llama-3.2-Vision chat layout, made with transformers.

    .venv/bin/python scripts/make_chat_fixture.py

Needs transformers and tokenizers: the virtual environment that scripts/make_model_fixtures.py
creates has both. Writes model/tests/fixtures/llama32_chat/ (committed, a few tens of kB), which
model/tests/chat_template.rs and training/src/data.rs test against:

  tokenizer.json, tokenizer_config.json, chat_template.jinja
      saved by transformers: a small byte-level BPE vocabulary with Llama 3's special tokens,
      and the chat template of meta-llama/Llama-3.2-11B-Vision-Instruct (TEMPLATE below), the
      template the reference renders every prompt with (its processor's apply_chat_template).
  expected.json
      conversations built as the reference builds them (content as a list of text parts; the
      system turn, when there is one, as a string); for each, the text of transformers'
      apply_chat_template and its ids as the reference tokenizes them (add_special_tokens=False);
      and an SFT example: the prompt ids and the target ids of "{answer}<|eot_id|>\\n", as the
      reference's sft/src/training/data.py makes them.

The date is passed as `date_string`: left out, transformers renders today's date (strftime_now).
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "model" / "tests" / "fixtures" / "llama32_chat"

# The chat template of meta-llama/Llama-3.2-11B-Vision-Instruct (tokenizer_config.json of its
# September 2024 release), kept verbatim as the input of this fixture.
TEMPLATE = r"""{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- Find out if there are any images #}
{% set image_ns = namespace(has_images=false) %}      
{%- for message in messages %}
    {%- for content in message['content'] %}
        {%- if content['type'] == 'image' %}
            {%- set image_ns.has_images = true %}
        {%- endif %}
    {%- endfor %}
{%- endfor %}

{#- Error out if there are images and system message #}
{%- if image_ns.has_images and not system_message == "" %}
    {{- raise_exception("Prompting with images is incompatible with system messages.") }}
{%- endif %}

{#- System message if there are no images #}
{%- if not image_ns.has_images %}
    {{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
    {%- if tools is not none %}
        {{- "Environment: ipython\n" }}
    {%- endif %}
    {{- "Cutting Knowledge Date: December 2023\n" }}
    {{- "Today Date: " + date_string + "\n\n" }}
    {%- if tools is not none and not tools_in_user_message %}
        {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
        {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
        {{- "Do not use variables.\n\n" }}
        {%- for t in tools %}
            {{- t | tojson(indent=4) }}
            {{- "\n\n" }}
        {%- endfor %}
    {%- endif %}
    {{- system_message }}
    {{- "<|eot_id|>" }}
{%- endif %}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}
        {%- if message['content'] is string %}
            {{- message['content'] }}
        {%- else %}
            {%- for content in message['content'] %}
                {%- if content['type'] == 'image' %}
                    {{- '<|image|>' }}
                {%- elif content['type'] == 'text' %}
                    {{- content['text'] }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""

SPECIAL = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|image|>",
]

# A GeneralPoints GP-L prompt as the reference words it (paper-spec §1.7): it starts and ends
# with a newline, which the template keeps.
PROMPT = """
[Task Description]
You are an expert 24 points card game player. You will receive a set of 4 cards.
Note that 'J', 'Q', and 'K' count as '10'., and each card must be used once.
Your goal is to output a formula that evaluates to 24 using numbers from the cards and operators such as '+', '-', '*', '/', '(', ')', and '='.

[Input]
Cards: ['A', '3', '10', 'K']

[Output]
{
  "cards": [x, y, z, w], where 'J', 'Q', and 'K' count as '10'.,
  "number": [a, b, c, d], where a, b, c, and d are the numbers on the cards,
  "formula": 'an equation that equals 24',
}
"""
ANSWER = """
{
  "cards": ['A', '3', '10', 'K'],
  "number": [1, 3, 10, 10],
  "formula": "(10+10+3)*1+1=24",
}"""
FEEDBACK = "You failed this trial because your formula does not match any solution."


def user(text):
    return {"role": "user", "text": text}


def assistant(text):
    return {"role": "assistant", "text": text}


CASES = [
    ("first_attempt", None, [user(PROMPT)], True, "26 Jul 2024"),
    ("revision", None, [user(PROMPT), assistant(ANSWER), user(FEEDBACK)], True, "26 Jul 2024"),
    ("system_and_date", "  You play cards.\n", [user(PROMPT)], True, "28 Jan 2025"),
    ("closed_turns", None, [user(" Hi "), assistant(" Hello! ")], False, "26 Jul 2024"),
]


def messages(system, turns):
    """The reference's payload: text parts in a list; the system turn as a string."""
    out = [] if system is None else [{"role": "system", "content": system}]
    for t in turns:
        out.append({"role": t["role"], "content": [{"type": "text", "text": t["text"]}]})
    return out


def byte_level_tokenizer():
    """A small byte-level BPE vocabulary over the fixture's texts, with Llama 3's specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [PROMPT, ANSWER, FEEDBACK, "Cutting Knowledge Date: December 2023\nToday Date: "]
    tok.train_from_iterator(corpus * 4, trainer)
    return tok


def main():
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    made = PreTrainedTokenizerFast(
        tokenizer_object=byte_level_tokenizer(),
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
    )
    made.chat_template = TEMPLATE
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():
        old.unlink()
    made.save_pretrained(OUT)
    # Render with the tokenizer as transformers reloads it from the saved files.
    tok = AutoTokenizer.from_pretrained(OUT)

    def ids(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    cases = []
    for name, system, turns, generation, date in CASES:
        text = tok.apply_chat_template(
            messages(system, turns),
            add_generation_prompt=generation,
            tokenize=False,
            date_string=date,
        )
        cases.append(
            {
                "name": name,
                "system": system,
                "turns": turns,
                "add_generation_prompt": generation,
                "date": date,
                "text": text,
                "ids": ids(text),
            }
        )
    prompt = tok.apply_chat_template(
        messages(None, [user(PROMPT)]),
        add_generation_prompt=True,
        tokenize=False,
        date_string="26 Jul 2024",
    )
    sft = {
        "date": "26 Jul 2024",
        "turns": [user(PROMPT)],
        "answer": ANSWER,
        "prompt_ids": ids(prompt),
        "target_ids": ids(f"{ANSWER}<|eot_id|>\n"),
    }
    import transformers

    expected = {
        "made_with": f"transformers {transformers.__version__}",
        "cases": cases,
        "sft": sft,
    }
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
    for path in sorted(OUT.iterdir()):
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    sys.exit(main())
