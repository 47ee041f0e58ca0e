//! `#[derive(Module)]`: writes a model struct's `tapegrad::nn::Module` impl from its
//! fields, as PyTorch's `nn.Module.__setattr__` registers sub-modules.
//!
//! From the fields the derive writes `named_parameters` (PyTorch's state-dict names:
//! `fc1.weight`, `blocks.0.fc.bias`), train/eval propagation (`set_training`), the list
//! of children for the model summary, and `Display` (the summary, as `print(model)`).
//! `forward` stays yours: write it as an inherent method, `impl Net { fn forward(&self,
//! x: &Tensor) -> Tensor { ... } }`, and the derived `Module::forward` calls it.
//!
//! A field may be a layer (any `Module`, including another derived struct), a `Tensor`
//! (a parameter, as `nn.Parameter`), an `Option` of either (absent: nothing), or a `Vec`
//! of either (`ModuleList`: named `field.0`, `field.1`). Each field goes through
//! `tapegrad::nn::ModuleField`, so its type decides how. A field that is none of these
//! (a config value, a cache) is marked `#[module(skip)]`.
//!
//! `#[module(crate = "tapegrad_nn")]` on the struct names the nn crate's path for code
//! that depends on `tapegrad-nn` directly instead of the `tapegrad` facade.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{format_ident, quote};
use syn::{parse_macro_input, Data, DeriveInput, Fields, LitStr, Path};

/// Derives `tapegrad::nn::Module` (and `Display`, the model summary) for a struct of
/// layers; see the crate documentation.
#[proc_macro_derive(Module, attributes(module))]
pub fn derive_module(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// One field the derive visits: how to reach it and its PyTorch name.
struct Field {
    member: TokenStream2,
    name: String,
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let mut nn: Path = syn::parse_quote!(::tapegrad::nn);
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("module")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                nn = meta.value()?.parse::<LitStr>()?.parse()?;
                Ok(())
            } else {
                Err(meta.error("expected `crate = \"path\"`"))
            }
        })?;
    }
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "#[derive(Module)] works on structs whose fields are layers",
        ));
    };
    let mut fields = Vec::new();
    let all: Vec<&syn::Field> = match &data.fields {
        Fields::Named(f) => f.named.iter().collect(),
        Fields::Unnamed(f) => f.unnamed.iter().collect(),
        Fields::Unit => Vec::new(),
    };
    for (i, field) in all.into_iter().enumerate() {
        let mut skip = false;
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("module")) {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("skip") {
                    skip = true;
                    Ok(())
                } else {
                    Err(meta.error("expected `skip`"))
                }
            })?;
        }
        if skip {
            continue;
        }
        let (member, name) = match &field.ident {
            Some(ident) => (quote!(#ident), ident.to_string()),
            None => {
                let index = syn::Index::from(i);
                (quote!(#index), i.to_string())
            }
        };
        fields.push(Field { member, name });
    }

    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let tensor = quote!(#nn::Tensor);
    let field = quote!(#nn::ModuleField);
    // One line per trait method and field; a new per-field method is one more method in
    // ModuleField and one more block here.
    let params = fields.iter().map(
        |Field { member, name }| quote!(#field::field_parameters(&self.#member, #name, &mut out);),
    );
    let buffers = fields.iter().map(
        |Field { member, name }| quote!(#field::field_buffers(&self.#member, #name, &mut out);),
    );
    let training = fields.iter().map(
        |Field { member, .. }| quote!(#field::field_set_training(&mut self.#member, training);),
    );
    let children = fields.iter().map(
        |Field { member, name }| quote!(#field::field_children(&self.#member, #name, &mut out);),
    );
    let input_ident = format_ident!("input");
    Ok(quote! {
        impl #impl_generics #nn::Module for #ident #ty_generics #where_clause {
            // Calls the struct's inherent `forward`. Without one, `Net::forward` would
            // name this very method and recurse forever; the decoy trait below makes
            // that a compile error instead (ambiguous with `Module::forward`, or a type
            // mismatch naming the fix). An inherent method wins over both traits.
            #[track_caller]
            fn forward(&self, #input_ident: &#tensor) -> #tensor {
                #[allow(non_camel_case_types, dead_code)]
                struct derive_Module_needs_an_inherent_fn_forward;
                #[allow(dead_code)]
                trait DecoyForward {
                    fn forward(&self, _: derive_Module_needs_an_inherent_fn_forward) {}
                }
                impl<T: ?Sized> DecoyForward for T {}
                #ident::forward(self, #input_ident)
            }

            fn named_parameters(&self) -> ::std::vec::Vec<(::std::string::String, #tensor)> {
                let mut out = ::std::vec::Vec::new();
                #(#params)*
                out
            }

            fn named_buffers(&self) -> ::std::vec::Vec<(::std::string::String, #tensor)> {
                let mut out = ::std::vec::Vec::new();
                #(#buffers)*
                out
            }

            fn set_training(&mut self, training: bool) {
                let _ = training;
                #(#training)*
            }

            fn children(&self) -> ::std::vec::Vec<(::std::string::String, &dyn #nn::Module)> {
                let mut out = ::std::vec::Vec::new();
                #(#children)*
                out
            }
        }

        impl #impl_generics ::std::fmt::Display for #ident #ty_generics #where_clause {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(&#nn::summary(self), f)
            }
        }
    })
}
