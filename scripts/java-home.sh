# Sourced by Ferry's scripts: exports JAVA_HOME pointing at a JDK 25 or newer, or exits with a clear message.
ferry_java_major() { "$1/bin/java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p' | head -n1; }
ferry_pick_java() {
  local candidate major
  for candidate in "${JAVA_HOME:-}" /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/temurin-2[6-9]-jdk-amd64 /usr/lib/jvm/java-2[5-9]-openjdk-amd64; do
    [ -n "$candidate" ] && [ -x "$candidate/bin/java" ] || continue
    major=$(ferry_java_major "$candidate")
    if [ -n "$major" ] && [ "${major%%.*}" -ge 25 ] 2>/dev/null; then
      export JAVA_HOME="$candidate"
      export PATH="$JAVA_HOME/bin:$PATH"
      return 0
    fi
  done
  echo "ferry: needs a JDK 25 or newer: none at JAVA_HOME=${JAVA_HOME:-unset} nor /usr/lib/jvm/temurin-25-jdk-amd64." >&2
  echo "ferry: install Temurin 25 (or any JDK 25+) and set JAVA_HOME to it." >&2
  exit 1
}
ferry_pick_java
