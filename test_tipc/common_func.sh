#!/usr/bin/env bash
# Helpers shared by prepare.sh and test_train_inference_python.sh: reading a TIPC
# train_infer_python.txt (one "key:value" per line, meaning given by the line's position) and
# turning its keys into command-line words.

# The config's lines, without trailing carriage returns, into the array LINES.
read_tipc_config() {
  local config=$1
  if [[ ! -f $config ]]; then
    echo "error: TIPC config $config does not exist (e.g. test_tipc/configs/factseg/train_infer_python.txt)" >&2
    return 2
  fi
  mapfile -t LINES < <(tr -d '\r' < "$config")
  if (( ${#LINES[@]} < 53 )); then
    echo "error: $config has ${#LINES[@]} lines; a train_infer_python.txt has 53 (train, eval, export and infer params)" >&2
    return 2
  fi
}

key_of() { printf '%s' "${1%%:*}"; }    # "key:value" -> key
value_of() { printf '%s' "${1#*:}"; }   # "key:value" -> value (may itself hold ':')
values_of() { IFS='|' read -r -a "$1" <<< "$(value_of "$2")"; }   # values_of NAME "key:a|b" -> array NAME=(a b)

# The value of "key:mode1=v1|mode2=v2" for $MODE, or the whole value when it is not per mode.
# Fails (status 2, message) when the line is per mode but does not name $MODE.
mode_value() {
  local line=$1 value item
  value=$(value_of "$line")
  if [[ $value != *_train_*=* && $value != whole_infer=* ]]; then
    printf '%s' "$value"
    return 0
  fi
  local IFS='|'
  for item in $value; do
    if [[ ${item%%=*} == "$MODE" ]]; then
      printf '%s' "${item#*=}"
      return 0
    fi
  done
  echo "error: config line '$line' has no value for mode $MODE" >&2
  return 2
}

# read_fields < TABLE: set variables from the config's lines (LINES) as TABLE says, one config line a
# row: "N KIND:NAME..." with KIND key (NAME becomes the line's key), value (its value), values (the
# array of its '|'-separated values) or mode (its value for $MODE, as mode_value gives it).
# Fails (status 2, message) where mode_value fails or a KIND is unknown.
read_fields() {
  local row number field value
  while read -r -a row; do
    number=${row[0]}
    for field in "${row[@]:1}"; do
      case ${field%%:*} in
        key) value=$(key_of "${LINES[number]}") ;;
        value) value=$(value_of "${LINES[number]}") ;;
        mode) value=$(mode_value "${LINES[number]}") || return 2 ;;
        values) values_of "${field#*:}" "${LINES[number]}"; continue ;;
        *) echo "error: unknown field kind in '$field' (key, value, values or mode)" >&2; return 2 ;;
      esac
      printf -v "${field#*:}" '%s' "$value"
    done
  done
}

# append_param KEY VALUE [words]: add one key to the arrays FLAGS (keys starting with '-', placed
# right after the script) or OVERRIDES (config overrides 'KEY VALUE', placed last). Nothing is
# added for the key or value 'null', an empty value, or the value 'False'; the value 'True' passes
# the flag alone (a switch). With 'words' a value holding spaces gives several words
# (--input_size 128 128); without it the value stays one word (a path).
append_param() {
  local key=$1 value=$2 words
  if [[ $key == null || -z $value || $value == null || $value == False ]]; then
    return 0
  fi
  if [[ ${3:-} == words ]]; then read -r -a words <<< "$value"; else words=("$value"); fi
  if [[ $key != -* ]]; then
    OVERRIDES+=("$key" "${words[@]}")
  elif [[ $value == True ]]; then
    FLAGS+=("$key")
  else
    FLAGS+=("$key" "${words[@]}")
  fi
}

# build_command PYTHON SCRIPT_LINE_VALUE: CMD=(python script FLAGS... rest-of-line OVERRIDES...).
# A relative script path is taken from the repository ($REPO), so commands may run in any folder.
build_command() {
  local python=$1 words
  read -r -a words <<< "$2"
  local script=${words[0]}
  [[ $script != /* && -f $REPO/$script ]] && script=$REPO/$script
  CMD=("$python" "$script" "${FLAGS[@]}" "${words[@]:1}" "${OVERRIDES[@]}")
}

# status_check STATUS: one TIPC result line for the command in CMD, appended to $STATUS_LOG.
status_check() {
  if [[ $1 -eq 0 ]]; then
    echo " Run successfully with command - $MODEL_NAME - ${CMD[*]}!  " | tee -a "$STATUS_LOG"
  else
    echo " Run failed with command - $MODEL_NAME - ${CMD[*]}!  " | tee -a "$STATUS_LOG"
    FAILURES=$((FAILURES + 1))
  fi
}
