"""Runs protoc-c, then renames C keywords protoc-c leaves in service stubs.

protoc-c names a service's function-pointer members after its methods, so
an RPC called Register becomes `void (*register)(...)`, which no C compiler
accepts. The platform never uses those stubs; renaming the member keeps the
generated header compilable.

usage: protoc_c.py PROTOC_C OUT_ROOT INCLUDE_ROOT PROTO HEADER
"""
import os
import re
import subprocess
import sys

protoc_c, out_root, inc_root, proto, header = sys.argv[1:6]
# protoc wants the .proto path under -I spelled the same way: absolute.
inc_root = os.path.abspath(inc_root)
proto = os.path.abspath(proto)
subprocess.run([protoc_c, '--c_out=' + out_root, '-I' + inc_root, proto],
               check=True)
KEYWORDS = ('auto|break|case|char|const|continue|default|do|double|else|enum|'
            'extern|float|for|goto|if|inline|int|long|register|restrict|'
            'return|short|signed|sizeof|static|struct|switch|typedef|union|'
            'unsigned|void|volatile|while')
text = open(header).read()
text = re.sub(r'\(\*(%s)\)\(' % KEYWORDS, r'(*\1_)(', text)
text = re.sub(r'## (%s),' % KEYWORDS, r'## \1_,', text)
open(header, 'w').write(text)
