#!/bin/sh
# Regenerates the fixture audio of the directory tests: names spoken by espeak-ng,
# stored as 8 kHz mono 16-bit WAV (what a G.711 call delivers after decoding).
set -e
cd "$(dirname "$0")"
say() {  # say FILE VOICE SPEED TEXT
    espeak-ng -v "$2" -s "$3" -w "/tmp/$(basename $1).22k.wav" "$4"
    sox "/tmp/$(basename $1).22k.wav" -r 8000 -c 1 -b 16 "$1.wav"
    rm -f "/tmp/$(basename $1).22k.wav"
}
say alice-johnson-us en-us 150 "Alice Johnson"
say alice-johnson-gb en-gb+f2 140 "Alice Johnson"
say bob-miller-m3 en-us+m3 160 "Bob Miller"
say siobhan-kelly-gb en-gb 150 "Siobhan Kelly"
say nguyen-van-minh en-us+f3 140 "Nguyen Van Minh"
say emma-wilson en-us 140 "Emma Wilson"
say leonard-dubois en-us 150 "Leonard Dubois"
say yes en-us 150 "yes"
say no en-gb 150 "no"
say ko-kim-minjun ko 140 "김민준"
say ko-lee-seoyeon ko 140 "이서연"
say ko-park-jihun ko 140 "박지훈"
say ko-choi-yuna ko 140 "최유나"
mkdir -p names
say names/zurcher en-gb+f2 140 "Anna Zürcher"
