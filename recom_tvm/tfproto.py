"""TensorFlow's GraphDef / SavedModel / tf.Example wire format, declared here so a frozen graph (and, on a serving
host, a serialized tf.Example) parses without TensorFlow. Protobuf only: the runtime imports it too.

Only the fields the importer reads are declared; protobuf skips the rest. Field numbers follow TF's public
`.proto` files (graph.proto, node_def.proto, attr_value.proto, tensor.proto, tensor_shape.proto, meta_graph.proto,
saved_model.proto), which are a stable wire contract. The messages live in a private descriptor pool, so they never
clash with TensorFlow's own classes when both are loaded in one process.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_OPT, _REP = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_T = {
    "int32": _F.TYPE_INT32, "int64": _F.TYPE_INT64, "uint32": _F.TYPE_UINT32, "uint64": _F.TYPE_UINT64,
    "float": _F.TYPE_FLOAT, "double": _F.TYPE_DOUBLE, "bool": _F.TYPE_BOOL, "string": _F.TYPE_STRING,
    "bytes": _F.TYPE_BYTES,
}

# message name -> [(field name, number, type or message name, repeated?, oneof index or None)]
_SCHEMA: dict[str, list[tuple]] = {
    "TensorShapeProto.Dim": [("size", 1, "int64", False), ("name", 2, "string", False)],
    "TensorShapeProto": [("dim", 2, "TensorShapeProto.Dim", True), ("unknown_rank", 3, "bool", False)],
    "TensorProto": [
        ("dtype", 1, "int32", False), ("tensor_shape", 2, "TensorShapeProto", False),
        ("version_number", 3, "int32", False), ("tensor_content", 4, "bytes", False),
        ("float_val", 5, "float", True), ("double_val", 6, "double", True), ("int_val", 7, "int32", True),
        ("string_val", 8, "bytes", True), ("int64_val", 10, "int64", True), ("bool_val", 11, "bool", True),
        ("half_val", 13, "int32", True), ("uint32_val", 16, "uint32", True), ("uint64_val", 17, "uint64", True),
    ],
    "AttrValue.ListValue": [
        ("s", 2, "bytes", True), ("i", 3, "int64", True), ("f", 4, "float", True), ("b", 5, "bool", True),
        ("type", 6, "int32", True), ("shape", 7, "TensorShapeProto", True), ("tensor", 8, "TensorProto", True),
        ("func", 9, "NameAttrList", True),
    ],
    "AttrValue": [
        ("list", 1, "AttrValue.ListValue", False, 0), ("s", 2, "bytes", False, 0), ("i", 3, "int64", False, 0),
        ("f", 4, "float", False, 0), ("b", 5, "bool", False, 0), ("type", 6, "int32", False, 0),
        ("shape", 7, "TensorShapeProto", False, 0), ("tensor", 8, "TensorProto", False, 0),
        ("placeholder", 9, "string", False, 0), ("func", 10, "NameAttrList", False, 0),
    ],
    "NameAttrList": [("name", 1, "string", False), ("attr", 2, "map:AttrValue", True)],
    "NodeDef": [
        ("name", 1, "string", False), ("op", 2, "string", False), ("input", 3, "string", True),
        ("device", 4, "string", False), ("attr", 5, "map:AttrValue", True),
    ],
    "VersionDef": [("producer", 1, "int32", False), ("min_consumer", 2, "int32", False)],
    "OpDef.ArgDef": [("name", 1, "string", False), ("type", 3, "int32", False), ("type_attr", 4, "string", False),
                     ("number_attr", 5, "string", False), ("type_list_attr", 6, "string", False)],
    "OpDef": [("name", 1, "string", False), ("input_arg", 2, "OpDef.ArgDef", True),
              ("output_arg", 3, "OpDef.ArgDef", True), ("is_stateful", 17, "bool", False)],
    # function.proto: branch functions of If / StatelessIf and called functions (inlined at import)
    "FunctionDef": [("signature", 1, "OpDef", False), ("node_def", 3, "NodeDef", True),
                    ("ret", 4, "map:string", True), ("control_ret", 6, "map:string", True)],
    "FunctionDefLibrary": [("function", 1, "FunctionDef", True)],
    "GraphDef": [("node", 1, "NodeDef", True), ("library", 2, "FunctionDefLibrary", False),
                 ("versions", 4, "VersionDef", False)],
    "TensorInfo.CooSparse": [
        ("values_tensor_name", 1, "string", False), ("indices_tensor_name", 2, "string", False),
        ("dense_shape_tensor_name", 3, "string", False),
    ],
    "TensorInfo": [
        ("name", 1, "string", False, 0), ("dtype", 2, "int32", False), ("tensor_shape", 3, "TensorShapeProto", False),
        ("coo_sparse", 4, "TensorInfo.CooSparse", False, 0),
    ],
    "SignatureDef": [
        ("inputs", 1, "map:TensorInfo", True), ("outputs", 2, "map:TensorInfo", True),
        ("method_name", 3, "string", False),
    ],
    "MetaGraphDef.MetaInfoDef": [
        ("meta_graph_version", 1, "string", False), ("tags", 4, "string", True),
        ("tensorflow_version", 5, "string", False),
    ],
    "AssetFileDef": [("tensor_info", 1, "TensorInfo", False), ("filename", 2, "string", False)],
    "AnyProto": [("type_url", 1, "string", False), ("value", 2, "bytes", False)],
    "CollectionDef.AnyList": [("value", 1, "AnyProto", True)],
    "CollectionDef": [("any_list", 5, "CollectionDef.AnyList", False)],
    "MetaGraphDef": [
        ("meta_info_def", 1, "MetaGraphDef.MetaInfoDef", False), ("graph_def", 2, "GraphDef", False),
        ("collection_def", 4, "map:CollectionDef", True),
        ("signature_def", 5, "map:SignatureDef", True), ("asset_file_def", 6, "AssetFileDef", True),
        ("object_graph_def", 7, "bytes", False),
    ],
    "SavedModel": [("saved_model_schema_version", 1, "int64", False), ("meta_graphs", 2, "MetaGraphDef", True)],
    # tf.Example (example.proto, feature.proto)
    "BytesList": [("value", 1, "bytes", True)],
    "FloatList": [("value", 1, "float", True)],
    "Int64List": [("value", 1, "int64", True)],
    "Feature": [("bytes_list", 1, "BytesList", False, 0), ("float_list", 2, "FloatList", False, 0),
                ("int64_list", 3, "Int64List", False, 0)],
    "Features": [("feature", 1, "map:Feature", True)],
    "Example": [("features", 1, "Features", False)],
}
_ONEOFS = {"AttrValue": ["value"], "TensorInfo": ["encoding"], "Feature": ["kind"]}
_PACKAGE = "recom_tvm_tf"


def _build_pool() -> descriptor_pool.DescriptorPool:
    fdp = descriptor_pb2.FileDescriptorProto(name="recom_tvm_tf.proto", package=_PACKAGE, syntax="proto3")
    protos: dict[str, descriptor_pb2.DescriptorProto] = {}

    def message(path: str) -> descriptor_pb2.DescriptorProto:
        if path in protos:
            return protos[path]
        parent, _, leaf = path.rpartition(".")
        container = message(parent).nested_type if parent else fdp.message_type
        protos[path] = container.add(name=leaf)
        return protos[path]

    for path, fields in _SCHEMA.items():
        msg = message(path)
        for oneof in _ONEOFS.get(path, []):
            msg.oneof_decl.add(name=oneof)
        for spec in fields:
            name, number, ftype, repeated = spec[:4]
            field = msg.field.add(name=name, number=number, label=_REP if repeated else _OPT)
            if len(spec) > 4:
                field.oneof_index = spec[4]
            if ftype.startswith("map:"):  # map<string, V> is a repeated nested *Entry message
                entry = msg.nested_type.add(name="".join(w.capitalize() for w in name.split("_")) + "Entry")
                entry.options.map_entry = True
                entry.field.add(name="key", number=1, label=_OPT, type=_F.TYPE_STRING)
                if ftype[4:] in _T:
                    entry.field.add(name="value", number=2, label=_OPT, type=_T[ftype[4:]])
                else:
                    entry.field.add(name="value", number=2, label=_OPT, type=_F.TYPE_MESSAGE,
                                    type_name=f".{_PACKAGE}.{ftype[4:]}")
                field.type, field.type_name = _F.TYPE_MESSAGE, f".{_PACKAGE}.{path}.{entry.name}"
            elif ftype in _T:
                field.type = _T[ftype]
            else:
                field.type, field.type_name = _F.TYPE_MESSAGE, f".{_PACKAGE}.{ftype}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return pool


_POOL = _build_pool()


def _cls(name: str):
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{_PACKAGE}.{name}"))


GraphDef = _cls("GraphDef")
NodeDef = _cls("NodeDef")
AttrValue = _cls("AttrValue")
TensorProto = _cls("TensorProto")
SavedModel = _cls("SavedModel")
MetaGraphDef = _cls("MetaGraphDef")
SignatureDef = _cls("SignatureDef")
AssetFileDef = _cls("AssetFileDef")
Example = _cls("Example")
