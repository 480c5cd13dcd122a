//! The `#[exporter]`, `#[transform]` and `#[view]` attributes of wasmtel-guest.
//!
//! Each goes on a function (a stateless plugin) or on the `impl` of the SDK's trait for a type
//! (a stateful one), and rejects anything else with a compile error pointing at the mistake.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as Tokens};
use quote::{ToTokens, quote};
use syn::spanned::Spanned;
use syn::{FnArg, Item, ItemFn, ItemImpl, ReturnType, Type};

/// Makes an exporter component of a function or of an `impl Exporter for T` block.
///
/// The function is `fn(&MetricBatch, &Config) -> Result<Vec<Outbound>, String>` (a metrics
/// exporter asking for cumulative temporality) or `fn(&LogBatch, &Config) -> …` (a logs
/// exporter); responses are classified by [`Outcome::from_status`].
#[proc_macro_attribute]
pub fn exporter(attr: TokenStream, item: TokenStream) -> TokenStream {
    finish(expand(Kind::Exporter, &attr.into(), item.into()))
}

/// Makes a transform component of a function or of an `impl Transform for T` block.
///
/// The function is `fn(&MetricBatch, &mut Edits, &Config) -> Result<(), String>` or the same
/// with `&LogBatch`; the other signal passes unchanged.
#[proc_macro_attribute]
pub fn transform(attr: TokenStream, item: TokenStream) -> TokenStream {
    finish(expand(Kind::Transform, &attr.into(), item.into()))
}

/// Makes a view component of a function or of an `impl View for T` block.
///
/// The function is `fn(&InstrumentInfo, &[KeyValue], &Config) -> Option<Vec<KeyValue>>`.
#[proc_macro_attribute]
pub fn view(attr: TokenStream, item: TokenStream) -> TokenStream {
    finish(expand(Kind::View, &attr.into(), item.into()))
}

fn finish(result: syn::Result<Tokens>) -> TokenStream {
    result.unwrap_or_else(syn::Error::into_compile_error).into()
}

/// The plugin kinds.
#[derive(Clone, Copy)]
enum Kind {
    Exporter,
    Transform,
    View,
}

impl Kind {
    fn attribute(self) -> &'static str {
        match self {
            Kind::Exporter => "exporter",
            Kind::Transform => "transform",
            Kind::View => "view",
        }
    }

    fn trait_name(self) -> &'static str {
        match self {
            Kind::Exporter => "Exporter",
            Kind::Transform => "Transform",
            Kind::View => "View",
        }
    }

    /// The signatures a function may have, as the parameter types and the return type.
    fn signatures(self) -> &'static [(&'static [&'static str], &'static str)] {
        match self {
            Kind::Exporter => &[
                (
                    &["&MetricBatch", "&Config"],
                    "Result<Vec<Outbound>, String>",
                ),
                (&["&LogBatch", "&Config"], "Result<Vec<Outbound>, String>"),
            ],
            Kind::Transform => &[
                (
                    &["&MetricBatch", "&mut Edits", "&Config"],
                    "Result<(), String>",
                ),
                (
                    &["&LogBatch", "&mut Edits", "&Config"],
                    "Result<(), String>",
                ),
            ],
            Kind::View => &[(
                &["&InstrumentInfo", "&[KeyValue]", "&Config"],
                "Option<Vec<KeyValue>>",
            )],
        }
    }
}

/// A type as written, with paths cut to their last segment and no spaces (`&wasmtel_guest::Config` → `&Config`).
fn shape(ty: &Type) -> String {
    match ty {
        Type::Reference(r) => {
            let mutability = if r.mutability.is_some() { "mut " } else { "" };
            format!("&{mutability}{}", shape(&r.elem))
        }
        Type::Slice(s) => format!("[{}]", shape(&s.elem)),
        Type::Tuple(t) if t.elems.is_empty() => "()".into(),
        Type::Path(p) => {
            let Some(last) = p.path.segments.last() else {
                return String::new();
            };
            let mut out = last.ident.to_string();
            if let syn::PathArguments::AngleBracketed(args) = &last.arguments {
                let inner: Vec<String> = args
                    .args
                    .iter()
                    .map(|a| match a {
                        syn::GenericArgument::Type(t) => shape(t),
                        other => other.to_token_stream().to_string(),
                    })
                    .collect();
                out.push('<');
                out.push_str(&inner.join(", "));
                out.push('>');
            }
            out
        }
        other => other.to_token_stream().to_string().replace(' ', ""),
    }
}

fn expand(kind: Kind, attr: &Tokens, item: Tokens) -> syn::Result<Tokens> {
    if !attr.is_empty() {
        return Err(syn::Error::new(
            attr.span(),
            format!("#[{}] takes no arguments", kind.attribute()),
        ));
    }
    match syn::parse2::<Item>(item)? {
        Item::Fn(function) => stateless(kind, &function),
        Item::Impl(block) => stateful(kind, &block),
        other => Err(syn::Error::new(
            other.span(),
            format!(
                "#[{}] goes on a function or on `impl {} for YourType`",
                kind.attribute(),
                kind.trait_name()
            ),
        )),
    }
}

/// Registers the type of an `impl <Trait> for T` block.
fn stateful(kind: Kind, block: &ItemImpl) -> syn::Result<Tokens> {
    let wanted = kind.trait_name();
    let names_trait = block
        .trait_
        .as_ref()
        .and_then(|(_, path, _)| path.segments.last())
        .is_some_and(|s| s.ident == wanted);
    if !names_trait {
        let span = block
            .trait_
            .as_ref()
            .map_or(block.self_ty.span(), |(_, path, _)| path.span());
        return Err(syn::Error::new(
            span,
            format!(
                "#[{}] goes on `impl {wanted} for YourType`",
                kind.attribute()
            ),
        ));
    }
    let mut block = block.clone();
    answer_spans(kind, &mut block);
    let ty = &block.self_ty;
    let register = match kind {
        Kind::Exporter => quote!(::wasmtel_guest::__export_exporter!(#ty);),
        Kind::Transform => quote!(::wasmtel_guest::__export_transform!(#ty);),
        Kind::View => quote!(::wasmtel_guest::__export_view!(#ty);),
    };
    Ok(quote! {
        #block
        #register
    })
}

/// Adds `takes_spans`/`edits_spans` answering yes to an impl that defines `encode_spans`/
/// `transform_spans` and not the question, so that spans reach it.
fn answer_spans(kind: Kind, block: &mut ItemImpl) {
    let (defines, asks) = match kind {
        Kind::Exporter => ("encode_spans", "takes_spans"),
        Kind::Transform => ("transform_spans", "edits_spans"),
        Kind::View => return,
    };
    let has = |name: &str| {
        block
            .items
            .iter()
            .any(|i| matches!(i, syn::ImplItem::Fn(f) if f.sig.ident == name))
    };
    if has(defines) && !has(asks) {
        let ask = syn::Ident::new(asks, Span::call_site());
        block.items.push(syn::parse_quote! {
            fn #ask(&self) -> bool {
                true
            }
        });
    }
}

/// Checks a function's signature against the kind's, naming the first parameter or return
/// type that differs.
fn check(kind: Kind, function: &ItemFn) -> syn::Result<usize> {
    let sig = &function.sig;
    let params: Vec<(String, Span)> = sig
        .inputs
        .iter()
        .map(|arg| match arg {
            FnArg::Typed(t) => (shape(&t.ty), t.ty.span()),
            FnArg::Receiver(r) => ("self".into(), r.span()),
        })
        .collect();
    let returns = match &sig.output {
        ReturnType::Default => ("()".to_owned(), sig.ident.span()),
        ReturnType::Type(_, ty) => (shape(ty), ty.span()),
    };
    let expected = kind
        .signatures()
        .iter()
        .map(|(p, r)| format!("fn({}) -> {r}", p.join(", ")))
        .collect::<Vec<_>>()
        .join(" or ");
    let attribute = kind.attribute();
    if let Some(generics) = sig.generics.lt_token {
        return Err(syn::Error::new(
            generics.span(),
            format!("#[{attribute}] functions take no generic parameters"),
        ));
    }
    // The signature whose first parameter matches, else the first one.
    let signatures = kind.signatures();
    let index = signatures
        .iter()
        .position(|(p, _)| params.first().is_some_and(|(first, _)| first == p[0]))
        .unwrap_or(0);
    let (want, want_return) = signatures[index];
    if params.len() != want.len() {
        return Err(syn::Error::new(
            sig.inputs.span(),
            format!(
                "#[{attribute}] expects {} parameters, this has {}: write {expected}",
                want.len(),
                params.len()
            ),
        ));
    }
    for ((got, span), want) in params.iter().zip(want) {
        if got != want {
            return Err(syn::Error::new(
                *span,
                format!("#[{attribute}] expects `{want}` here, not `{got}`: write {expected}"),
            ));
        }
    }
    if returns.0 != want_return {
        return Err(syn::Error::new(
            returns.1,
            format!(
                "#[{attribute}] functions return `{want_return}`, not `{}`",
                returns.0
            ),
        ));
    }
    Ok(index)
}

/// Wraps a function in a type that implements the kind's trait and registers it.
fn stateless(kind: Kind, function: &ItemFn) -> syn::Result<Tokens> {
    let which = check(kind, function)?;
    let name = &function.sig.ident;
    let g = quote!(::wasmtel_guest);
    let result = quote!(::std::result::Result);
    let body = match (kind, which) {
        (Kind::Exporter, 0) => quote! {
            impl #g::Exporter for Stateless {
                fn init(config: #g::Config) -> #result<(Self, #g::ExporterInfo), ::std::string::String> {
                    #result::Ok((Self(config), #g::ExporterInfo::metrics(#g::Temporality::Cumulative)))
                }
                fn encode_metrics(&mut self, batch: &#g::MetricBatch) -> #result<::std::vec::Vec<#g::Outbound>, ::std::string::String> {
                    #name(batch, &self.0)
                }
            }
            #g::__export_exporter!(Stateless);
        },
        (Kind::Exporter, _) => quote! {
            impl #g::Exporter for Stateless {
                fn init(config: #g::Config) -> #result<(Self, #g::ExporterInfo), ::std::string::String> {
                    #result::Ok((Self(config), #g::ExporterInfo::logs()))
                }
                fn encode_logs(&mut self, batch: &#g::LogBatch) -> #result<::std::vec::Vec<#g::Outbound>, ::std::string::String> {
                    #name(batch, &self.0)
                }
            }
            #g::__export_exporter!(Stateless);
        },
        (Kind::Transform, 0) => quote! {
            impl #g::Transform for Stateless {
                fn init(config: #g::Config) -> #result<Self, ::std::string::String> {
                    #result::Ok(Self(config))
                }
                fn transform_metrics(&mut self, batch: &#g::MetricBatch, edits: &mut #g::Edits) -> #result<(), ::std::string::String> {
                    #name(batch, edits, &self.0)
                }
            }
            #g::__export_transform!(Stateless);
        },
        (Kind::Transform, _) => quote! {
            impl #g::Transform for Stateless {
                fn init(config: #g::Config) -> #result<Self, ::std::string::String> {
                    #result::Ok(Self(config))
                }
                fn transform_logs(&mut self, batch: &#g::LogBatch, edits: &mut #g::Edits) -> #result<(), ::std::string::String> {
                    #name(batch, edits, &self.0)
                }
            }
            #g::__export_transform!(Stateless);
        },
        (Kind::View, _) => quote! {
            impl #g::View for Stateless {
                fn init(config: #g::Config) -> #result<Self, ::std::string::String> {
                    #result::Ok(Self(config))
                }
                fn map_attributes(&self, instrument: &#g::InstrumentInfo, attributes: &[#g::KeyValue]) -> ::std::option::Option<::std::vec::Vec<#g::KeyValue>> {
                    #name(instrument, attributes, &self.0)
                }
            }
            #g::__export_view!(Stateless);
        },
    };
    Ok(quote! {
        #function

        const _: () = {
            /// The plugin generated around the function: its configuration.
            struct Stateless(#g::Config);
            #body
        };
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(kind: Kind, item: Tokens) -> (String, String) {
        let e = expand(kind, &Tokens::new(), item).expect_err("refused");
        let spanned = e.to_compile_error().to_string();
        (e.to_string(), spanned)
    }

    #[test]
    fn an_impl_that_defines_spans_says_it_takes_them() {
        let count = |kind, item: Tokens, ask: &str| {
            let out = expand(kind, &Tokens::new(), item).expect("expands");
            out.to_string().matches(&format!("fn {ask}")).count()
        };
        let spans = quote!(impl Exporter for T { fn encode_spans(&mut self) {} });
        assert_eq!(count(Kind::Exporter, spans, "takes_spans"), 1);
        let asked = quote!(impl Exporter for T { fn encode_spans(&mut self) {} fn takes_spans(&self) -> bool { false } });
        assert_eq!(
            count(Kind::Exporter, asked, "takes_spans"),
            1,
            "the author's answer stands"
        );
        let metrics = quote!(impl Exporter for T { fn encode_metrics(&mut self) {} });
        assert_eq!(count(Kind::Exporter, metrics, "takes_spans"), 0);
        let edits = quote!(impl Transform for T { fn transform_spans(&mut self) {} });
        assert_eq!(count(Kind::Transform, edits, "edits_spans"), 1);
    }

    #[test]
    fn right_signatures_expand() {
        let ok = [
            (
                Kind::Exporter,
                quote!(
                    fn f(b: &MetricBatch, c: &Config) -> Result<Vec<Outbound>, String> {
                        todo!()
                    }
                ),
            ),
            (
                Kind::Exporter,
                quote!(
                    fn f(b: &wasmtel_guest::LogBatch, c: &Config) -> Result<Vec<Outbound>, String> {
                        todo!()
                    }
                ),
            ),
            (
                Kind::Transform,
                quote!(
                    fn f(b: &MetricBatch, e: &mut Edits, c: &Config) -> Result<(), String> {
                        Ok(())
                    }
                ),
            ),
            (
                Kind::View,
                quote!(
                    fn f(i: &InstrumentInfo, a: &[KeyValue], c: &Config) -> Option<Vec<KeyValue>> {
                        None
                    }
                ),
            ),
            (Kind::Transform, quote!(impl Transform for T {})),
            (Kind::View, quote!(impl wasmtel_guest::View for T {})),
        ];
        for (kind, item) in ok {
            let out = expand(kind, &Tokens::new(), item)
                .expect("accepted")
                .to_string();
            assert!(out.contains("__export_"), "{out}");
        }
    }

    #[test]
    fn a_wrong_parameter_is_named_with_its_own_span() {
        let (message, _) = error(
            Kind::Exporter,
            quote!(
                fn f(b: MetricBatch, c: &Config) -> Result<Vec<Outbound>, String> {
                    todo!()
                }
            ),
        );
        assert!(
            message.starts_with("#[exporter] expects `&MetricBatch` here, not `MetricBatch`"),
            "{message}"
        );
        let (message, _) = error(
            Kind::Transform,
            quote!(
                fn f(b: &MetricBatch, c: &Config) -> Result<(), String> {
                    Ok(())
                }
            ),
        );
        assert!(
            message.starts_with("#[transform] expects 3 parameters, this has 2"),
            "{message}"
        );
        let (message, _) = error(
            Kind::View,
            quote!(
                fn f(i: &InstrumentInfo, a: &[KeyValue], c: &Config) -> Vec<KeyValue> {
                    vec![]
                }
            ),
        );
        assert_eq!(
            message,
            "#[view] functions return `Option<Vec<KeyValue>>`, not `Vec<KeyValue>`"
        );
    }

    #[test]
    fn the_wrong_trait_or_item_is_refused() {
        let (message, _) = error(Kind::Exporter, quote!(impl Transform for T {}));
        assert_eq!(message, "#[exporter] goes on `impl Exporter for YourType`");
        let (message, _) = error(
            Kind::View,
            quote!(
                struct S;
            ),
        );
        assert_eq!(
            message,
            "#[view] goes on a function or on `impl View for YourType`"
        );
        let e = expand(Kind::View, &quote!(x), quote!(impl View for T {})).expect_err("refused");
        assert_eq!(e.to_string(), "#[view] takes no arguments");
    }
}
