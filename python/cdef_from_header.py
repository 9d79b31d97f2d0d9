"""Turns the cbindgen header include/os_lively.h into a cffi cdef.

cffi's parser takes plain C declarations without preprocessor lines, so
this keeps the C view of the header (no C++ or C23 branches), drops
comments and includes, and keeps each `#define NAME value` with a plain
integer value (cffi's ABI mode, which the wheel uses, has no compiler to
ask for a value: `UINT64_MAX` is spelled out, anything else unknown is an
error naming the macro). Only the text is transformed; every declaration
comes from the header.
"""

import re

_C_VIEW_FALSE = ("__cplusplus", "__STDC_VERSION__")


#: Values the header spells with <stdint.h> names, as cffi needs them.
_KNOWN_VALUES = {"UINT64_MAX": "0xFFFFFFFFFFFFFFFF", "UINT32_MAX": "0xFFFFFFFF"}
_INTEGER = re.compile(r"^-?(0[xX][0-9a-fA-F]+|\d+)$")


def _define_value(name, value):
    value = _KNOWN_VALUES.get(value.strip(), value.strip())
    if not _INTEGER.match(value):
        raise ValueError("cdef_from_header: #define %s %s is not an integer cffi can take" % (name, value))
    return value


#: Attribute macros the header puts before declarations (the function
#: attribute `LIVELY_MUST_USE`): cffi needs neither them nor their
#: definitions.
_ATTRIBUTE_MACROS = ("LIVELY_MUST_USE",)


def _condition(line):
    """Whether a conditional line is true when compiling as C11 with no
    compiler extensions (cffi's view)."""
    word, _, rest = line.partition(" ")
    rest = rest.strip()
    if word == "#ifdef":
        return rest not in _C_VIEW_FALSE
    if word == "#ifndef":
        return True  # include guard, `#ifndef __cplusplus`, `#ifndef LIVELY_MUST_USE`
    if any(name in rest for name in _C_VIEW_FALSE):
        return False  # `#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L`
    if word == "#elif" and ("__GNUC__" in rest or "__clang__" in rest):
        return False  # compiler-specific attributes
    raise ValueError("cdef_from_header: unsupported conditional %r" % line)


def cdef_from_header(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    for name in _ATTRIBUTE_MACROS:
        text = re.sub(r"^\s*%s\s+" % name, "", text, flags=re.M)
    out = []
    stack = []  # (this branch taken, parent active, some branch taken)
    for raw in text.splitlines():
        line = raw.strip()
        active = all(taken for taken, _, _ in stack)
        if line.startswith("#"):
            word = line.split()[0]
            if word in ("#if", "#ifdef", "#ifndef"):
                taken = _condition(line)
                stack.append((taken, active, taken))
            elif word == "#elif":
                _, parent, done = stack.pop()
                taken = not done and _condition(line)
                stack.append((taken, parent, done or taken))
            elif word == "#else":
                _, parent, done = stack.pop()
                stack.append((not done, parent, True))
            elif word == "#endif":
                stack.pop()
            elif word == "#define" and active:
                parts = line.split(None, 2)
                if len(parts) == 3 and parts[1] not in _ATTRIBUTE_MACROS:
                    out.append("#define %s %s" % (parts[1], _define_value(parts[1], parts[2])))
            # #include and anything else: nothing for cffi
            continue
        if active and line:
            out.append(raw)
    if stack:
        raise ValueError("cdef_from_header: unbalanced conditionals")
    return "\n".join(out) + "\n"
