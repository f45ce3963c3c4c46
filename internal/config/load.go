package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v4"
)

// EnvPrefix starts the name of every environment override.
const EnvPrefix = "AGENTD_"

// maxRefFileBytes caps what a ${file:PATH} reference may read.
const maxRefFileBytes = 1 << 20

// Load builds the configuration in this order:
//
//  1. the YAML file at path, decoded strictly (unknown fields and duplicate
//     keys are errors with line numbers; durations are Go duration strings
//     such as "30s"); path "" means no file;
//  2. AGENTD_* overrides from environ (a list of "KEY=value" entries such as
//     os.Environ(); later entries win) for every scalar field outside of
//     lists, see EnvVars;
//  3. ${env:NAME} and ${file:PATH} references in every string field,
//     including Secrets and the fields of agents;
//  4. ApplyDefaults;
//  5. Validate.
//
// An unset variable in ${env:NAME} resolves to "" and validation decides
// whether an empty value is acceptable. A relative PATH in ${file:PATH} is
// relative to the directory of the config file (the working directory when
// path is ""). Errors name the file, the environment variable or the field's
// YAML path.
func Load(path string, environ []string) (*Config, error) {
	if path == "" {
		return Parse(nil, "", ".", environ)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, path, filepath.Dir(path), environ)
}

// Parse is Load of a configuration already read: data is the YAML named
// name (its path; "" means no file: data is ignored and src is the
// environment), whose relative ${file:PATH} references are relative to
// baseDir. Load reads the file and calls Parse; the fuzz target FuzzLoad
// calls it directly, without file I/O per input.
func Parse(data []byte, name, baseDir string, environ []string) (*Config, error) {
	cfg := &Config{}
	src := "environment"
	if name != "" {
		src = name
		if err := decodeStrict(data, cfg); err != nil {
			return nil, fmt.Errorf("config %s: %w", name, err)
		}
	}
	env := envMap(environ)
	if err := applyEnv(cfg, env); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg.recordSecretSources(env, baseDir)
	if err := resolveRefs(cfg, env, baseDir); err != nil {
		return nil, fmt.Errorf("config %s: %w", src, err)
	}
	cfg.resolveRuntimeDirs(baseDir)
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config %s is invalid:\n%w", src, err)
	}
	return cfg, nil
}

// decodeStrict decodes one YAML document into cfg, rejecting unknown fields
// and further documents. An empty file (or one with only comments) is an
// empty configuration.
func decodeStrict(data []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return err
		}
		return fmt.Errorf("yaml: line %d: only one YAML document is allowed", extra.Line)
	}
	return nil
}

// Redacted returns the configuration as YAML with every Secret masked. It
// is what `agentd config check` and the start-up log print.
func (c *Config) Redacted() string {
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return fmt.Sprintf("# cannot encode config: %v\n", err)
	}
	_ = enc.Close()
	return b.String()
}

// envMap turns "KEY=value" entries into a map; later entries win.
func envMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// scalarField is one overridable field: a scalar outside of any list.
type scalarField struct {
	path  string // YAML path, "providers.anthropic.api_key"
	env   string // override variable, "AGENTD_PROVIDERS_ANTHROPIC_API_KEY"
	value reflect.Value
}

// scalarFields lists the scalar fields of the struct v points to, found by
// reflecting over yaml tags; lists and maps are skipped.
func scalarFields(v reflect.Value) []scalarField {
	var out []scalarField
	var walk func(v reflect.Value, path []string)
	walk = func(v reflect.Value, path []string) {
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name) // yaml.v3's default
			}
			p := append(path[:len(path):len(path)], name)
			fv := v.Field(i)
			switch fv.Kind() {
			case reflect.Struct:
				walk(fv, p)
			case reflect.Slice, reflect.Array, reflect.Map, reflect.Pointer, reflect.Interface:
				// Lists are configured in the file only.
			default:
				out = append(out, scalarField{
					path:  strings.Join(p, "."),
					env:   EnvPrefix + strings.ToUpper(strings.Join(p, "_")),
					value: fv,
				})
			}
		}
	}
	walk(v.Elem(), nil)
	return out
}

// EnvVars maps the name of every AGENTD_* override variable to the YAML
// path of the field it sets, e.g. "AGENTD_SERVER_ADDR" → "server.addr".
func EnvVars() map[string]string {
	m := map[string]string{}
	for _, f := range scalarFields(reflect.ValueOf(&Config{})) {
		m[f.env] = f.path
	}
	return m
}

// applyEnv applies AGENTD_* overrides. A variable set to "" resets its field
// to the zero value, i.e. to the default.
func applyEnv(cfg *Config, env map[string]string) error {
	var errs []error
	for _, f := range scalarFields(reflect.ValueOf(cfg)) {
		s, ok := env[f.env]
		if !ok {
			continue
		}
		if err := setScalar(f.value, s); err != nil {
			errs = append(errs, fmt.Errorf("%s (%s): %w", f.env, f.path, err))
		}
	}
	return errors.Join(errs...)
}

var durationType = reflect.TypeFor[time.Duration]()

// setScalar parses s into v according to v's type.
func setScalar(v reflect.Value, s string) error {
	if s == "" {
		v.SetZero()
		return nil
	}
	if v.Kind() == reflect.String {
		v.SetString(s)
		return nil
	}
	s = strings.TrimSpace(s)
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("invalid duration %q (want e.g. \"30s\", \"2m\")", s)
		}
		v.SetInt(int64(d))
		return nil
	case v.CanInt():
		n, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("invalid integer %q", s)
		}
		v.SetInt(n)
		return nil
	case v.CanUint():
		n, err := strconv.ParseUint(s, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("invalid unsigned integer %q", s)
		}
		v.SetUint(n)
		return nil
	case v.CanFloat():
		n, err := strconv.ParseFloat(s, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("invalid number %q", s)
		}
		v.SetFloat(n)
		return nil
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("invalid boolean %q (want true or false)", s)
		}
		v.SetBool(b)
		return nil
	}
	return fmt.Errorf("unsupported field type %s", v.Type())
}

// resolveRefs replaces ${env:NAME} and ${file:PATH} references in every
// string field of cfg, including list elements, the values of string maps
// (secrets, headers, env) and the fields of map entries
// (managed.tenants.NAME).
func resolveRefs(cfg *Config, env map[string]string, baseDir string) error {
	var errs []error
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		switch v.Kind() {
		case reflect.Struct:
			t := v.Type()
			for i := range t.NumField() {
				f := t.Field(i)
				name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
				if !f.IsExported() || name == "-" {
					continue
				}
				if name == "" {
					name = strings.ToLower(f.Name)
				}
				p := name
				if path != "" {
					p = path + "." + name
				}
				walk(v.Field(i), p)
			}
		case reflect.Pointer:
			if !v.IsNil() {
				walk(v.Elem(), path) // agents[].runtime
			}
		case reflect.Slice, reflect.Array:
			for i := range v.Len() {
				walk(v.Index(i), fmt.Sprintf("%s[%d]", path, i))
			}
		case reflect.Map:
			if v.Type().Key().Kind() != reflect.String {
				return
			}
			if v.Type().Elem().Kind() == reflect.Struct {
				// Entries such as managed.tenants.NAME, which hold
				// secrets: a map's values are copies, so each is
				// walked as a copy and stored back.
				iter := v.MapRange()
				for iter.Next() {
					e := reflect.New(v.Type().Elem()).Elem()
					e.Set(iter.Value())
					walk(e, path+"."+iter.Key().String())
					v.SetMapIndex(iter.Key(), e)
				}
				return
			}
			if v.Type().Elem().Kind() != reflect.String {
				return
			}
			iter := v.MapRange()
			for iter.Next() {
				p := path + "." + iter.Key().String()
				s, err := expand(iter.Value().String(), env, baseDir)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", p, err))
					continue
				}
				v.SetMapIndex(iter.Key(), reflect.ValueOf(s).Convert(v.Type().Elem()))
			}
		case reflect.String:
			s, err := expand(v.String(), env, baseDir)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", path, err))
				return
			}
			v.SetString(s)
		}
	}
	walk(reflect.ValueOf(cfg).Elem(), "")
	return errors.Join(errs...)
}

// expand resolves the references in s. "$${env:" and "$${file:" produce a
// literal "${env:" / "${file:"; any other "${" is left as it is. Resolved
// text is not scanned again.
func expand(s string, env map[string]string, baseDir string) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		rest := s[i+2:]
		isRef := strings.HasPrefix(rest, "env:") || strings.HasPrefix(rest, "file:")
		if i > 0 && s[i-1] == '$' && isRef { // escaped: $${env:...}
			b.WriteString(s[:i-1])
			b.WriteString("${")
			s = rest
			continue
		}
		b.WriteString(s[:i])
		if !isRef {
			b.WriteString("${")
			s = rest
			continue
		}
		end := strings.IndexByte(rest, '}')
		if end < 0 {
			return "", fmt.Errorf("unterminated reference %q (want ${env:NAME} or ${file:PATH})", s[i:])
		}
		ref := rest[:end]
		s = rest[end+1:]
		kind, arg, _ := strings.Cut(ref, ":")
		switch kind {
		case "env":
			if !validEnvName(arg) {
				return "", fmt.Errorf("${%s}: invalid environment variable name %q", ref, arg)
			}
			b.WriteString(env[arg])
		case "file":
			if arg == "" {
				return "", fmt.Errorf("${%s}: empty file path", ref)
			}
			text, err := readRefFile(arg, baseDir)
			if err != nil {
				return "", fmt.Errorf("${%s}: %w", ref, err)
			}
			b.WriteString(text)
		}
	}
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', 'A' <= r && r <= 'Z', 'a' <= r && r <= 'z':
		case '0' <= r && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// readRefFile reads a ${file:PATH} reference and trims trailing newlines.
func readRefFile(path, baseDir string) (string, error) {
	if !filepath.IsAbs(path) {
		path = filepath.Join(baseDir, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRefFileBytes+1))
	if err != nil {
		return "", err
	}
	if len(data) > maxRefFileBytes {
		return "", fmt.Errorf("%s: larger than %d bytes", path, maxRefFileBytes)
	}
	return strings.TrimRight(string(data), "\r\n"), nil
}
